"""How far could any churn or value model go on a dataset? Optimistic bounds, beside the deployed models.

The deployed models learn from cutoffs whose labels ended before the test cutoff. The bounds here cheat in their
favour: LightGBM in the deployed form (`fit_gbm`: the same features, the same model inputs, calibration or
offset) learns from the test cutoff's own members and labels (5-fold cross-validation within the cutoff, so no
drift between training and test, and no season it has not seen). Where the data has products, a second bound adds
features the feature store does not have (quantity per line, unit price, lines per order, active months, and a
16-dimensional SVD of each member's basket). What they cannot reach, no honest model on these labels reaches.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.model_selection import KFold, StratifiedKFold

from features.dataset.store import Dataset
from serving.models.kinds import ModelKind, Target
from training.members.fit import fit_gbm
from training.members.frames import LabelledFrame, labelled_snapshot
from training.metrics import target_metrics

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


def cross_validated(frame: pd.DataFrame, kind: ModelKind, horizon_days: int, seed: int = 0) -> dict[str, float]:
    """The kind's metrics of `fit_gbm` scored out of fold on one cutoff's own members."""
    frame = frame.reset_index(drop=True)
    label = frame[str(kind.label)]
    if kind.target is Target.binary:
        folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(frame, label.astype(int))
    else:
        folds = KFold(FOLDS, shuffle=True, random_state=seed).split(frame)
    predicted = np.zeros(len(frame))
    for train, test in folds:
        model = fit_gbm(LabelledFrame(frame.iloc[train]), kind, {}, seed, horizon_days)
        predicted[test] = model.predict(frame.iloc[test])
    return target_metrics(kind, frame, predicted)


def _has_products(dataset: Dataset) -> bool:
    orders = dataset.read("orders", ["product_id"])
    return bool(orders["product_id"].notna().any())


def ceiling_rows(
    dataset: Dataset, cutoffs: list[date], horizon_days: int, kind: ModelKind
) -> list[dict[str, float | str]]:
    """Per cutoff and variant ("store": the feature store's features; "basket": those plus basket features, where
    the orders name products): the kind's metrics of the bound."""
    orders = None
    if _has_products(dataset):
        columns = ["member_id", "ts", "amount", "order_id", "product_id", "quantity", "is_return"]
        orders = dataset.read("orders", columns)
        orders["is_return"] = orders["is_return"].fillna(False).astype(bool)
    rows: list[dict[str, float | str]] = []
    for cutoff in cutoffs:
        frame = labelled_snapshot(dataset, cutoff, horizon_days)
        rows.append({"cutoff": str(cutoff), "variant": "store", **cross_validated(frame, kind, horizon_days)})
        if orders is not None:
            richer = frame.merge(basket_features(orders, cutoff), left_on="member_id", right_index=True, how="left")
            rows.append({"cutoff": str(cutoff), "variant": "basket", **cross_validated(richer, kind, horizon_days)})
    return rows
