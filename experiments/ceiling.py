"""How far could any churn or value model go on Online Retail? Optimistic bounds, beside the deployed models.

The deployed models learn from cutoffs whose labels ended before the test cutoff. The bounds here cheat in
their favour twice: they learn from the test cutoff's own members and labels (5-fold cross-validation within
the cutoff, so no drift between training and test), and they may add features the feature store does not have
(quantity per line, unit price, lines per order, active months, and a 16-dimensional SVD of each member's
basket). What they cannot reach, no honest model on these features and labels reaches either.
"""

from __future__ import annotations

from datetime import date

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

from features.schema import LABEL_NAMES
from features.store import Dataset
from serving.models.families.baselines import run_rate
from training.frames import labelled_snapshot
from training.member_fit import lgb_params
from training.metrics import value_metrics

FOLDS = 5


def basket_features(orders: pd.DataFrame, as_of: date, svd_dims: int = 16) -> pd.DataFrame:
    """Per member, from sales before T: how they buy (quantities, prices, spread over months) and what (SVD)."""
    sales = orders[(orders["ts"] < pd.Timestamp(as_of)) & orders["member_id"].notna() & ~orders["is_return"]]
    by_member = sales.groupby("member_id")
    out = pd.DataFrame(
        {
            "quantity_per_line": by_member["quantity"].median(),
            "unit_price": (sales["amount"] / sales["quantity"]).groupby(sales["member_id"]).median(),
            "lines_per_order": by_member.size() / by_member["order_id"].nunique(),
            "active_months": sales.assign(month=sales["ts"].dt.to_period("M")).groupby("member_id")["month"].nunique(),
        }
    )
    pairs = sales.groupby(["member_id", "product_id"]).size().rename("n").reset_index()
    members, products = pairs["member_id"].astype("category"), pairs["product_id"].astype("category")
    basket = sp.csr_matrix((np.log1p(pairs["n"].to_numpy(float)), (members.cat.codes, products.cat.codes)))
    factors = TruncatedSVD(svd_dims, random_state=0).fit_transform(TfidfTransformer().fit_transform(basket))
    svd = pd.DataFrame(factors, index=members.cat.categories, columns=[f"basket_svd_{i}" for i in range(svd_dims)])
    return out.join(svd)


def _columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("member_id", "cutoff", *LABEL_NAMES)]


def cross_validated_auc(frame: pd.DataFrame, seed: int = 0) -> float:
    """ROC-AUC of LightGBM scored out of fold on the cutoff's own members: the optimistic churn bound."""
    y = frame["churned"].astype(int).to_numpy()
    model = lgb.LGBMClassifier(**lgb_params({"n_estimators": 300}, seed))
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, frame[_columns(frame)], y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def cross_validated_value(frame: pd.DataFrame, horizon_days: int, seed: int = 0) -> dict[str, float]:
    """The value model's form (Tweedie, run-rate offset) scored out of fold on the cutoff's own members."""
    frame = frame.reset_index(drop=True)
    x, y = frame[_columns(frame)], frame["future_value"].clip(lower=0).to_numpy(dtype=float)
    offset = np.log(run_rate(frame, horizon_days) + 10.0)
    predicted = np.zeros(len(frame))
    for train, test in KFold(FOLDS, shuffle=True, random_state=seed).split(x):
        params = lgb_params({"n_estimators": 300, "objective": "tweedie", "tweedie_variance_power": 1.3}, seed)
        model = lgb.LGBMRegressor(**params).fit(x.iloc[train], y[train], init_score=offset[train])
        predicted[test] = np.exp(model.predict(x.iloc[test], raw_score=True) + offset[test])
    return value_metrics(y, predicted)


def ceiling_rows(dataset: Dataset, cutoffs: list[date], horizon_days: int) -> list[dict[str, float | str]]:
    """Per cutoff: each bound on the feature store's features, and on those plus the basket features."""
    orders = dataset.read("orders", ["member_id", "ts", "amount", "order_id", "product_id", "quantity", "is_return"])
    orders["is_return"] = orders["is_return"].fillna(False).astype(bool)
    rows: list[dict[str, float | str]] = []
    for cutoff in cutoffs:
        frame = labelled_snapshot(dataset, cutoff, horizon_days)
        richer = frame.merge(basket_features(orders, cutoff), left_on="member_id", right_index=True, how="left")
        store_value, richer_value = (cross_validated_value(f, horizon_days) for f in (frame, richer))
        rows.append(
            {
                "cutoff": str(cutoff),
                "churn_auc_store": cross_validated_auc(frame),
                "churn_auc_basket": cross_validated_auc(richer),
                "value_rmse_store": store_value["rmse"],
                "value_rmse_basket": richer_value["rmse"],
                "value_gini_store": store_value["normalized_gini"],
                "value_gini_basket": richer_value["normalized_gini"],
            }
        )
    return rows
