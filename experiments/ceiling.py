"""How far could any churn model go on Online Retail? An optimistic bound, beside what the deployed model gets.

The deployed model learns from cutoffs whose labels ended before the test cutoff. The bound here cheats in its
favour twice: it learns from the test cutoff's own members and labels (5-fold cross-validation within the
cutoff, so no drift between training and test), and it adds features the feature store does not have (quantity
per line, unit price, lines per order, active months, and a 16-dimensional SVD of each member's basket). What it
cannot reach, no honest model on these features and labels reaches either.
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
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from features.store import Dataset
from training.frames import LABEL_COLUMNS, labelled_snapshot
from training.models import lgb_params

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


def cross_validated_auc(frame: pd.DataFrame, seed: int = 0) -> float:
    """ROC-AUC of LightGBM scored out of fold on the cutoff's own members: the optimistic bound."""
    columns = [c for c in frame.columns if c not in ("member_id", "cutoff", *LABEL_COLUMNS)]
    y = frame["churned"].astype(int).to_numpy()
    model = lgb.LGBMClassifier(**lgb_params({"n_estimators": 300}, seed))
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, frame[columns], y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def ceiling_rows(dataset: Dataset, cutoffs: list[date], horizon_days: int) -> list[dict[str, float | str]]:
    """Per cutoff: the bound on the feature store's features, and on those plus the basket features."""
    orders = dataset.read("orders", ["member_id", "ts", "amount", "order_id", "product_id", "quantity", "is_return"])
    orders["is_return"] = orders["is_return"].fillna(False).astype(bool)
    rows: list[dict[str, float | str]] = []
    for cutoff in cutoffs:
        frame = labelled_snapshot(dataset, cutoff, horizon_days)
        richer = frame.merge(basket_features(orders, cutoff), left_on="member_id", right_index=True, how="left")
        rows.append(
            {
                "cutoff": str(cutoff),
                "store features, in-cutoff CV": cross_validated_auc(frame),
                "+ basket features, in-cutoff CV": cross_validated_auc(richer),
            }
        )
    return rows
