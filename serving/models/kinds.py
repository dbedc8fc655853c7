"""The table of model kinds: what each model predicts, how it is judged and how it is served.

Everything that differs between kinds is derived from this table: the CLI's choices, the gate's metrics, the
matrix a recommender learns from and its list defaults, the learned families `train` judges. The service, batch
scoring and a Bento take whichever champions a dataset has (the tiers need churn and value:
serving/models/tiers.py). Adding a kind is one entry here; a new family is declared where its task's families
are: a recommender family's record in serving/models/families/recommenders.py, a member family's class in
serving/models/families/ and its record in training/members/fit.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from features.common.errors import DataError
from features.pipelines.interactions import ITEM_SOURCES, ItemSource


class Target(StrEnum):
    """What a kind predicts, which says how it is evaluated."""

    binary = "binary"  # a yes/no label per member (ROC-AUC, Brier)
    amount = "amount"  # a non-negative amount per member (RMSE, normalized Gini)
    items = "items"  # the items a member takes next (precision@k, nDCG@k)
    uplift = "uplift"  # the change a campaign's push makes to a member's outcome (Qini, uplift@k)


class Task(StrEnum):
    """How a kind's model is asked: per member from the feature snapshot, or for ranked items."""

    member = "member"
    items = "items"


@dataclass(frozen=True)
class GateMetric:
    name: str
    higher_is_better: bool

    def beats(self, ours: float, theirs: float) -> bool:
        """Strictly better: a tie is not a win."""
        return ours > theirs if self.higher_is_better else ours < theirs


@dataclass(frozen=True)
class ModelKind:
    name: str  # the CLI's choice; the dataset's registered model is DATASET.name
    summary: str
    target: Target
    families: tuple[str, ...]  # the learned families `train` tunes and judges beside the baselines, the default first
    gate: tuple[GateMetric, ...]  # a candidate must beat every rival on each; tuning optimises the first
    label: str | None = None  # member kinds: the snapshot label it learns
    output: str | None = None  # member kinds: the field of a member's answer it fills
    items: ItemSource | None = None  # item kinds: the source of items they recommend (features/pipelines)
    exclude_seen: bool = False  # item kinds: whether lists leave out what the member already has, by default

    @property
    def family(self) -> str:
        """The first learned family the kind declares: judged first, and what a caller asks for by default."""
        return self.families[0]

    @property
    def learns_from_labels(self) -> bool:
        """Learns from a snapshot's labels at monthly cutoffs (churn, value): what backtests and retraining run."""
        return self.label is not None

    @property
    def learns_from_campaign(self) -> bool:
        """Learns from a randomized campaign's exposures (uplift): trained only when there is one."""
        return self.target is Target.uplift

    @property
    def task(self) -> Task:
        return Task.items if self.target is Target.items else Task.member

    def train_command(self, dataset: str) -> str:
        """How a user trains this kind on a dataset (what error messages suggest)."""
        return f"community-ml train {self.name} --dataset {dataset}" + (
            " --campaign NAME" if self.learns_from_campaign else ""
        )

    def registered_name(self, dataset: str) -> str:
        """The dataset's own registered model: models and champions never mix between datasets."""
        return f"{dataset}.{self.name}"


_RANKING = (GateMetric("precision", True), GateMetric("ndcg", True))
# Lists that may repeat the member's own items are also asked for without them (`recommend --exclude-seen`): the
# precision of those new-item lists is gated too, so a family that wins on repeats (buy again) cannot serve
# new-item lists worse than the families it replaced.
_RANKING_WITH_NEW_ITEMS = (*_RANKING, GateMetric("new_only_precision", True))

CHURN = ModelKind(
    "churn",
    "who will stop buying: the probability of no purchase in the horizon",
    Target.binary,
    families=("lightgbm",),
    gate=(GateMetric("roc_auc", True),),
    label="churned",
    output="churn_probability",
)
VALUE = ModelKind(
    "value",
    "lifetime value: each member's expected spend over the horizon",
    Target.amount,
    # LightGBM correcting the best baseline; P(buys) x a buyer's spend; a blend of those and two baselines.
    families=("lightgbm", "two-part", "blend"),
    # Ranking first: who will spend is what value is asked for (the published reference judges it by normalized
    # Gini and decile charts), and RMSE on long-tailed spend is too noisy to be confidently better on; a
    # candidate may give up at most the gate's margin of RMSE (training/gate.py).
    gate=(GateMetric("normalized_gini", True), GateMetric("rmse", False)),
    label="future_value",
    output="expected_value",
)
PRODUCT_RECS = ModelKind(
    "product-recs",
    "products each member should be shown next (repeat buying allowed)",
    Target.items,
    families=("als",),
    gate=_RANKING_WITH_NEW_ITEMS,
    items=ITEM_SOURCES["products"],
    exclude_seen=False,  # repeat buying is normal in retail
)
CONTENT_RECS = ModelKind(
    "content-recs",
    "content each member should be shown next (nothing already seen)",
    Target.items,
    families=("als",),
    gate=_RANKING,
    items=ITEM_SOURCES["contents"],
    exclude_seen=True,  # content already read is not worth pushing again
)

UPLIFT = ModelKind(
    "uplift",
    "who a campaign's push changes: each member's predicted lift in its outcome if pushed (from a randomized "
    "campaign's exposures)",
    Target.uplift,
    families=("x-learner",),
    # The Qini coefficient: how much more of the campaign's effect the top of the ranking holds than a random
    # order does. Random targeting scores 0.
    gate=(GateMetric("qini", True),),
    output="uplift",
)

KINDS: dict[str, ModelKind] = {k.name: k for k in (CHURN, VALUE, PRODUCT_RECS, CONTENT_RECS, UPLIFT)}


def kind(name: str | ModelKind) -> ModelKind:
    """The kind of that name; a clear error naming the known kinds otherwise."""
    if isinstance(name, ModelKind):
        return name
    try:
        return KINDS[str(name)]
    except KeyError:
        raise DataError(f"unknown model kind {name!r}; the kinds are {', '.join(KINDS)}") from None


def kinds_of(task: Task) -> list[ModelKind]:
    return [k for k in KINDS.values() if k.task is task]
