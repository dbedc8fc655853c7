"""The promotion gate, one rule for `train` and `promote`: a candidate replaces what would serve otherwise only
when it is better on its kind's first gate metric with 95% confidence, and no worse than a stated margin on the
others.

Confidence comes from a paired bootstrap over members: each replicate draws the members of the held-out cutoffs
with replacement (a member drawn twice counts twice at every cutoff they appear in, so a member's cutoffs move
together), scores candidate and rival on the same draw, and takes the difference of their means over the
cutoffs. The 2.5th and 97.5th percentiles of those differences are the interval. The metrics are computed from
count weights instead of copied rows, so every replicate reuses one sort of the predictions.

Where an evaluation keeps no per-member predictions (recommendations and uplift are judged on lists and arms,
whose figures are not sums over members), the gate falls back to the point rule: the candidate must beat every
rival on every gate metric (a tie is not a win).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from features.common.settings import project_settings
from serving.models.kinds import GateMetric, ModelKind
from training.metrics import WEIGHTED, unnormalised_weighted_gini

REPLICATES = 1000
CONFIDENCE = 0.95
# The members the bootstrap draws from at most (COMMUNITY_ML_GATE_MEMBERS, 50,000): beyond them a random sample of
# members (all their cutoffs). Its intervals are wider than the whole population's would be (by sqrt(members / 50,000)),
# so a gain it finds is there; CDNOW (23,570) and Online Retail are drawn whole. The figures themselves are every
# member's. How much worse than a rival a candidate may be on the gate's other metrics (non-inferiority: refused when
# its 95% interval lies wholly below minus the margin), and why: - RMSE, 1% of the rival's: a model that ranks members
# confidently better may cost a little error, not more than the smallest change anyone would act on. On long-tailed
# spend a handful of the largest buyers move RMSE by far more than 1% between bootstrap draws (Online Retail: ±30%), so
# a point comparison within 1% would be noise deciding; the interval decides instead. - Gini, ROC-AUC (absolute): 0.005,
# a tenth of the gains a family switch is made for.
MARGINS: dict[str, tuple[float, bool]] = {  # metric: (margin, relative to the rival's figure)
    "rmse": (0.01, True),
    "normalized_gini": (0.005, False),
    "roc_auc": (0.005, False),
}


@dataclass
class HeldOutPredictions:
    """The per-member predictions behind an evaluation: for each held-out cutoff, its members, what they did, and
    every judged method's predictions."""

    cutoffs: list[str] = field(default_factory=list)
    members: list[np.ndarray] = field(default_factory=list)
    actual: list[np.ndarray] = field(default_factory=list)
    predicted: dict[str, list[np.ndarray]] = field(default_factory=dict)
    # Bootstrap figures worked out from these predictions (training.gate.replicate_figures), by metric and draws.
    figures: dict[tuple[str, int, int], dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def add_cutoff(self, cutoff: str, members: np.ndarray, actual: np.ndarray) -> None:
        self.cutoffs.append(cutoff)
        self.members.append(np.asarray(members).astype(str))
        self.actual.append(np.asarray(actual, dtype=float))

    def add(self, method: str, predicted: np.ndarray) -> None:
        """The method's predictions at the newest cutoff added."""
        self.predicted.setdefault(method, []).append(np.asarray(predicted, dtype=float))
        self.figures.clear()

    def renamed(self, method: str, name: str) -> HeldOutPredictions:
        """The same cutoffs with `method`'s predictions also under `name` (the champion's configuration), and the
        bootstrap figures already worked out for it."""
        figures = {key: {**by, name: by[method]} if method in by else dict(by) for key, by in self.figures.items()}
        return HeldOutPredictions(
            self.cutoffs, self.members, self.actual, {**self.predicted, name: self.predicted[method]}, figures
        )

    def merged(self, other: HeldOutPredictions) -> HeldOutPredictions:
        """Another evaluation's methods on the same cutoffs and members added (`same_members`), with the bootstrap
        figures either worked out: the same members and seed give the same draws."""
        figures = {
            key: {**self.figures.get(key, {}), **other.figures.get(key, {})} for key in {*self.figures, *other.figures}
        }
        return HeldOutPredictions(
            self.cutoffs, self.members, self.actual, {**self.predicted, **other.predicted}, figures
        )

    def same_members(self, other: HeldOutPredictions) -> bool:
        """Whether `other` judged the same members at the same cutoffs (so their predictions pair up)."""
        return self.cutoffs == other.cutoffs and all(
            np.array_equal(a, b) for a, b in zip(self.members, other.members, strict=True)
        )

    def has(self, *methods: str) -> bool:
        return bool(self.cutoffs) and all(len(self.predicted.get(m, [])) == len(self.cutoffs) for m in methods)

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {"cutoffs": np.array(self.cutoffs)}
        for i in range(len(self.cutoffs)):
            arrays[f"members/{i}"], arrays[f"actual/{i}"] = self.members[i], self.actual[i]
            for method, values in self.predicted.items():
                arrays[f"predicted/{i}/{method}"] = values[i]
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> HeldOutPredictions:
        with np.load(path, allow_pickle=False) as saved:
            cutoffs = [str(c) for c in saved["cutoffs"]]
            out = cls()
            for i, cutoff in enumerate(cutoffs):
                out.add_cutoff(cutoff, saved[f"members/{i}"], saved[f"actual/{i}"])
            for name in saved.files:
                if name.startswith("predicted/"):
                    _, i, method = name.split("/", 2)
                    out.predicted.setdefault(method, [np.empty(0)] * len(cutoffs))[int(i)] = saved[name]
        return out


@dataclass(frozen=True)
class Comparison:
    """One gate metric, candidate against one rival: the gain (positive: the candidate is better) and its
    interval (None without per-member predictions)."""

    rival: str
    metric: str
    ours: float
    theirs: float
    gain: float
    low: float | None = None
    high: float | None = None
    passed: bool = False
    why: str = ""

    def row(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in ("rival", "metric", "ours", "theirs", "gain", "low", "high", "passed")}


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str]
    comparisons: list[Comparison] = field(default_factory=list)

    def table(self) -> str:
        """The gate's comparisons as a text table: what `train` and `promote` print."""
        lines = []
        for c in self.comparisons:
            interval = "" if c.low is None else f" [{c.low:+.4f}, {c.high:+.4f}]"
            mark = "ok" if c.passed else "no"
            figures = f"{c.ours:12.4f} vs {c.rival:32} {c.theirs:12.4f}  gain {c.gain:+.4f}{interval}"
            lines.append(f"  {mark:2} {c.metric:16} {figures}")
        return "\n".join(lines)


def gate(
    kind: ModelKind,
    candidate: dict[str, float],
    rivals: dict[str, dict[str, float]],
    evidence: HeldOutPredictions | None = None,
    name: str | None = None,
    seed: int = 0,
) -> Verdict:
    """The candidate (`name`'s predictions in `evidence`) against every rival (baselines and champion): with
    per-member predictions of both, better on the first gate metric with 95% confidence and within the margin on
    the others; without, strictly better on every gate metric."""
    judged = [(metric, position == 0) for position, metric in enumerate(kind.gate)]
    return _verdict(judged, candidate, rivals, evidence, name, seed, _beats)


def within_margins(
    kind: ModelKind,
    candidate: dict[str, float],
    others: dict[str, dict[str, float]],
    evidence: HeldOutPredictions | None = None,
    name: str | None = None,
    seed: int = 0,
) -> Verdict:
    """How a baseline qualifies among baselines: not worse than any of the `others` by more than the margin on the
    gate's metrics after the first (the first ranks them), as the gate judges those metrics. So the best-ranking
    baseline serves unless it buys its ranking with much larger errors (a run rate over a window too short for the
    horizon, say)."""
    judged = [(metric, False) for metric in kind.gate[1:]]
    return _verdict(judged, candidate, others, evidence, name, seed, _within_margin)


def _verdict(
    judged: list[tuple[GateMetric, bool]],
    candidate: dict[str, float],
    rivals: dict[str, dict[str, float]],
    evidence: HeldOutPredictions | None,
    name: str | None,
    seed: int,
    unpaired: Callable[[GateMetric, float, float, str], Comparison],
) -> Verdict:
    """Each (metric, whether it is the first) against each rival: with the paired interval where both have
    per-member predictions and the metric can be weighed, else by the `unpaired` rule on the point figures."""
    comparisons = []
    for rival, metrics in rivals.items():
        paired = evidence is not None and name is not None and evidence.has(name, rival)
        for metric, first in judged:
            ours, theirs = candidate[metric.name], metrics[metric.name]
            if paired and metric.name in WEIGHTED:
                assert evidence is not None and name is not None
                comparisons.append(_judged(metric, first, ours, theirs, rival, evidence, name, seed))
            else:
                comparisons.append(unpaired(metric, ours, theirs, rival))
    reasons = [c.why for c in comparisons if not c.passed]
    return Verdict(not reasons, reasons, comparisons)


def _beats(metric: GateMetric, ours: float, theirs: float, rival: str) -> Comparison:
    """Without per-member predictions: strictly better on the point figures (a tie is not a win)."""
    passed = metric.beats(ours, theirs)
    why = "" if passed else f"{metric.name} {ours:.4f} does not beat {rival} ({theirs:.4f})"
    return Comparison(rival, metric.name, ours, theirs, _gain(metric, ours, theirs), passed=passed, why=why)


def _allowed(metric: GateMetric, theirs: float) -> float:
    margin, relative = MARGINS.get(metric.name, (0.0, False))
    return margin * abs(theirs) if relative else margin


def _within_margin(metric: GateMetric, ours: float, theirs: float, rival: str) -> Comparison:
    """Without per-member predictions: the point figures within the margin."""
    gain, allowed = _gain(metric, ours, theirs), _allowed(metric, theirs)
    why = f"{metric.name} {ours:.4f} is worse than {rival} ({theirs:.4f}) by more than the margin ({allowed:.4f})"
    passed = gain >= -allowed
    return Comparison(rival, metric.name, ours, theirs, gain, passed=passed, why="" if passed else why)


def _gain(metric: GateMetric, ours: float, theirs: float) -> float:
    return ours - theirs if metric.higher_is_better else theirs - ours


def _judged(
    metric: GateMetric,
    first: bool,
    ours: float,
    theirs: float,
    rival: str,
    evidence: HeldOutPredictions,
    name: str,
    seed: int,
) -> Comparison:
    """One metric with its paired interval. The first gate metric must be better with 95% confidence (the interval
    of the gain above zero); another may not be worse by more than its margin with 95% confidence (the interval
    entirely below minus the margin refuses): a test either way, so noise decides neither."""
    low, high = paired_interval(metric, evidence, name, rival, seed=seed)
    gain = _gain(metric, ours, theirs)
    interval = f"95% interval [{low:+.4f}, {high:+.4f}]"
    if first:
        passed = low > 0
        why = f"{metric.name} {ours:.4f} against {rival} ({theirs:.4f}): gain {gain:+.4f}, {interval} is not above zero"
    else:
        allowed = _allowed(metric, theirs)
        passed = high >= -allowed
        why = (
            f"{metric.name} {ours:.4f} is worse than {rival} ({theirs:.4f}) by more than the margin ({allowed:.4f}): "
            f"gain {gain:+.4f}, {interval}"
        )
    return Comparison(rival, metric.name, ours, theirs, gain, low, high, passed, "" if passed else why)


def paired_interval(
    metric: GateMetric,
    evidence: HeldOutPredictions,
    ours: str,
    theirs: str | None,
    replicates: int = REPLICATES,
    seed: int = 0,
) -> tuple[float, float]:
    """The 95% interval of `ours`' gain over `theirs` on `metric` (mean over the cutoffs), from a paired bootstrap
    over members (the same draws for both; a member drawn k times weighs k at every cutoff). Without `theirs`, the
    interval of `ours`' own figure."""
    figures = replicate_figures(evidence, metric.name, replicates, seed)
    drawn = figures[ours] if theirs is None else figures[ours] - figures[theirs]
    if theirs is not None and not metric.higher_is_better:
        drawn = -drawn
    tail = (1 - CONFIDENCE) / 2
    return float(np.quantile(drawn, tail)), float(np.quantile(drawn, 1 - tail))


def replicate_figures(
    evidence: HeldOutPredictions, metric: str, replicates: int = REPLICATES, seed: int = 0, chunk: int = 100
) -> dict[str, np.ndarray]:
    """Every method's figure (mean over the cutoffs) in each bootstrap replicate, all methods under the same draws
    of members: worked out once per method, metric and seed (the draws are made again from the seed for a method
    added later), so any pair's gain is a difference of two rows."""
    key = (metric, replicates, seed)
    known = evidence.figures.setdefault(key, {})
    methods = [m for m in evidence.predicted if evidence.has(m) and m not in known]
    if not methods:
        return known
    everyone, where = np.unique(np.concatenate(evidence.members), return_inverse=True)
    rows = np.cumsum([0, *(len(m) for m in evidence.members)])
    rng = np.random.default_rng(seed)
    kept = np.ones(len(where), dtype=bool)
    cap = project_settings().gate_members
    if len(everyone) > cap:  # a random sample of members, every cutoff of each
        chosen = np.zeros(len(everyone), dtype=bool)
        chosen[rng.choice(len(everyone), cap, replace=False)] = True
        kept = chosen[where]
        everyone = np.flatnonzero(chosen)
        where = np.searchsorted(everyone, where)
    drawn: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        # members x replicates: each member's row of counts is contiguous, so sorting members moves whole rows
        counts = rng.multinomial(len(everyone), np.full(len(everyone), 1 / len(everyone)), size=size).T.astype(float)
        total = {m: np.zeros(size) for m in methods}
        for i, actual in enumerate(evidence.actual):
            inside = kept[rows[i] : rows[i + 1]]
            weights = counts[where[rows[i] : rows[i + 1]][inside]]
            predictions = {m: evidence.predicted[m][i][inside] for m in methods}
            for m, values in _chunk_figures(metric, actual[inside], predictions, weights).items():
                total[m] += values
        for m in methods:
            drawn[m].append(total[m] / len(evidence.actual))
    known.update({m: np.concatenate(v) for m, v in drawn.items()})
    return known


def _chunk_figures(
    metric: str, actual: np.ndarray, predictions: dict[str, np.ndarray], weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Each method's figure under each row of weights (the Gini's perfect ranking worked out once for all)."""
    if metric == "normalized_gini":
        perfect = unnormalised_weighted_gini(actual, actual, weights)
        return {m: unnormalised_weighted_gini(actual, p, weights) / perfect for m, p in predictions.items()}
    score = WEIGHTED[metric]
    return {m: score(actual, p, weights) for m, p in predictions.items()}
