"""Model families: one module per algorithm, each able to load what training saved and to score with it.

`FAMILIES` maps the "family" written in a saved model's spec.json to its class, so one loader (and one MLflow
"models from code" file, serving/models/pyfunc_model.py) serves every kind and family. A new family is its module
and one entry here; training fits it (training/trainers.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from features.errors import DataError
from serving.models.base import ItemModel, MemberModel, read_spec
from serving.models.families.baselines import BASELINES, BaselineModel
from serving.models.families.factors import ITEM_FAMILIES, FactorRecommender
from serving.models.families.gbm import GBMModel
from serving.models.families.uplift import UPLIFT_FAMILIES, UpliftModel

FAMILIES: dict[str, type[MemberModel] | type[ItemModel]] = {
    GBMModel.family: GBMModel,
    **dict.fromkeys(ITEM_FAMILIES, FactorRecommender),  # als, bpr, item-knn, ease, ...: one class, its spec says which
    **dict.fromkeys(BASELINES, BaselineModel),  # recency, rfm, bgnbd-..., run-rate: one class, its spec says which
    **dict.fromkeys(UPLIFT_FAMILIES, UpliftModel),  # x-learner, t-learner, random
}


def load_model(artifacts: Mapping[str, str]) -> MemberModel | ItemModel:
    """The fitted model saved in `artifacts` (its spec.json names the family)."""
    family = read_spec(artifacts).get("family")
    if family not in FAMILIES:
        raise DataError(
            f"a saved model of family {family!r}, which this version does not know (known: {', '.join(FAMILIES)})"
        )
    return FAMILIES[family].load(artifacts)
