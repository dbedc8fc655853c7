"""Model families: one module per algorithm, each able to load what training saved and to score with it.

`model_class` maps the "family" written in a saved model's spec.json to its class, so one loader (and one MLflow
"models from code" file, serving/models/pyfunc_model.py) serves every kind and family. A member family is its
class (a MemberModel subclass registers the families it loads by being defined), fitted by its record in
training (training/members/fit.py); a recommender family is its record in recommenders.py (the factorizer,
parameters, search space and what it offers), served by FactorRecommender.
"""

from __future__ import annotations

from collections.abc import Mapping

from features.common.errors import DataError
from serving.models.base import MEMBER_CLASSES, ItemModel, MemberModel, read_spec
from serving.models.families import baselines, combined, gbm, uplift
from serving.models.families.factors import FactorRecommender
from serving.models.families.recommenders import ITEM_FAMILIES

# The member families' classes register themselves (MemberModel): importing their modules here is what makes
# them known to the loader; every recommender family (a record of recommenders.py) is a FactorRecommender.
MEMBER_MODULES = (gbm, baselines, combined, uplift)


def model_class(family: str) -> type[MemberModel] | type[ItemModel] | None:
    """The class that loads and scores a family's saved models (None: a family this version does not know)."""
    return FactorRecommender if family in ITEM_FAMILIES else MEMBER_CLASSES.get(family)


def load_model(artifacts: Mapping[str, str]) -> MemberModel | ItemModel:
    """The fitted model saved in `artifacts` (its spec.json names the family)."""
    family = str(read_spec(artifacts).get("family"))
    loader = model_class(family)
    if loader is None:
        known = ", ".join([*MEMBER_CLASSES, *ITEM_FAMILIES])
        raise DataError(f"a saved model of family {family!r}, which this version does not know (known: {known})")
    return loader.load(artifacts)
