"""Choosing what serves, one code for `train` and `promote`: the candidate among every judged family (`choose`),
whom it must beat (`must_beat`), and the gate's verdict against those rivals and the dataset's champion, re-judged
on the candidate's own held-out data (`judge`).

The candidate is the best family by the kind's first gate metric among those that may serve: a learned family
(LightGBM; ALS, BPR, item neighbours, EASE) only if it beats every baseline that can serve on every gate metric,
a baseline (recency, RFM, BG/NBD for churn; run rate, BG/NBD + Gamma-Gamma for value; most popular and buy again
for recommendations) as it is. So after the first `train` of any dataset every kind has a champion, the best
honest predictor there is, and every answer names its family.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from features.common.errors import DataError
from features.common.progress import step
from features.dataset.store import Dataset
from features.pipelines.snapshots import fingerprint
from serving.models import registry
from serving.models.kinds import ModelKind
from training.gate import HeldOutPredictions, Verdict, gate, within_margins
from training.trainer import Evaluation, HeldOut, Trainer, TrainSettings

Scores = dict[str, dict[str, float]]  # each judged family's held-out metrics, by family


def must_beat(
    family: str,
    scores: Scores,
    servable: list[str],
    learned: list[str],
    references: list[str] | None = None,
    parts: list[str] | None = None,
) -> Scores:
    """Whom a candidate must beat, besides the champion: a learned family, every baseline that could serve in its
    place, the kind's references (methods judged that cannot serve, e.g. churn targeting for uplift) and, for a
    combination of families (the value blend), each of its parts; a baseline, no one (it was chosen as the best
    there is). Any other method that could not serve would decide nothing: refusing a learned family for it would
    serve a worse baseline instead."""
    if family not in learned:
        return {}
    rivals = [*(n for n in servable if n not in learned), *(references or []), *(parts or [])]
    return {name: metrics for name, metrics in scores.items() if name in rivals and name != family}


def choose(
    kind: ModelKind,
    scores: Scores,
    servable: list[str],
    learned: list[str],
    references: list[str] | None = None,
    evidence: HeldOutPredictions | None = None,
    parts: dict[str, list[str]] | None = None,
    seed: int = 0,
) -> tuple[str, str]:
    """(the candidate family, why): the best judged family by the kind's first gate metric, a learned one only if
    it passes the gate against every servable baseline (and a blend against its parts). A baseline always
    qualifies, so there is always one."""
    first = kind.gate[0]
    sign = 1 if first.higher_is_better else -1
    ranked = sorted((f for f in servable if f in scores), key=lambda f: sign * scores[f][first.name], reverse=True)
    parts = parts or {}
    baselines = {f: scores[f] for f in ranked if f not in learned}
    verdicts = {}
    for f in ranked:
        if f in learned:
            rivals = must_beat(f, scores, servable, learned, references, parts.get(f))
            verdicts[f] = gate(kind, scores[f], rivals, evidence, f, seed)
        else:
            others = {b: m for b, m in baselines.items() if b != f}
            verdicts[f] = within_margins(kind, scores[f], others, evidence, f, seed)
    # The best-ranking family that passes: a learned family that passes beats every baseline; the best-ranking
    # baseline within the margins of the others is reached only where every learned family above it failed, and a
    # baseline qualifies whenever none does (the best on the first metric), so there is always a candidate.
    chosen = next((f for f, v in verdicts.items() if v.passed), None)
    if chosen is None:
        chosen = next((f for f in ranked if f not in learned), None)
    if chosen is None:
        raise DataError(f"no family could be judged for {kind.name}")
    above = ranked[: ranked.index(chosen)]
    failed = [
        f"{f} does not pass the gate ({v.reasons[0]})"
        for f, v in verdicts.items()
        if not v.passed and (f in learned or f in above)
    ]
    if chosen in learned:
        best = f"the best {'learned family' if failed else 'family'} on {first.name} that passes the gate"
    else:
        best = f"the best baseline on {first.name} within the margins of the others, needs to beat only the champion"
    return chosen, "; ".join([*failed, f"{chosen}, {best}: the candidate"])


def candidate(job: Trainer, kind: ModelKind, evaluation: Evaluation, settings: TrainSettings) -> tuple[str, str]:
    """The run's candidate and why: the choice among every judged family, or the family `--family` asks for."""
    servable, learned = job.servable(kind), job.learned(kind)
    scores, evidence = evaluation.scores, evaluation.predictions
    family, why = choose(
        kind, scores, servable, learned, job.references(kind), evidence, job.parts(kind), settings.seed
    )
    if settings.family is None or settings.family == family:
        return family, why
    if settings.family not in scores:
        raise DataError(f"--family {settings.family}: it could not be judged on this data (see above)")
    return settings.family, f"{settings.family} was asked for (the choice would be {family})"


@dataclass(frozen=True)
class ChampionJudged:
    name: str  # "champion FAMILY vN"
    family: str
    metrics: dict[str, float]
    predictions: HeldOutPredictions | None  # its per-member predictions under `family`, where kept


@dataclass(frozen=True)
class Judgement:
    """The gate's verdict on a candidate, and what it was judged against."""

    verdict: Verdict
    rivals: Scores  # every other judged family, and the champion re-judged: what the run records
    evidence: HeldOutPredictions | None  # the per-member predictions the gate bootstrapped, the champion's included


def judge(
    job: Trainer,
    dataset: Dataset,
    kind: ModelKind,
    client: Any,
    held_out: HeldOut,
    settings: TrainSettings,
    family: str,
    scores: Scores,
    judged: dict[str, dict[str, Any]],
    evidence: HeldOutPredictions | None,
) -> Judgement:
    """The gate's verdict on `family` (its metrics in `scores`) against whom it must beat and the dataset's current
    champion, re-judged on the same held-out data: what `train` and `promote` both decide by."""
    rivals = {name: metrics for name, metrics in scores.items() if name != family}
    against = must_beat(
        family, rivals, job.servable(kind), job.learned(kind), job.references(kind), job.parts(kind).get(family)
    )
    champion = judge_champion(job, dataset, kind, client, held_out, settings, scores, judged, evidence)
    if champion is not None:
        rivals[champion.name] = against[champion.name] = champion.metrics
        evidence = _with_champion(evidence, champion)
    return Judgement(gate(kind, scores[family], against, evidence, family, settings.seed), rivals, evidence)


def judge_champion(
    job: Trainer,
    dataset: Dataset,
    kind: ModelKind,
    client: Any,
    held_out: HeldOut,
    settings: TrainSettings,
    scores: Scores,
    judged: dict[str, dict[str, Any]],
    evidence: HeldOutPredictions | None = None,
) -> ChampionJudged | None:
    """The dataset's current champion's configuration (family and parameters), re-trained and judged on the
    candidate's own held-out data (so both are judged on the same members), as a rival. Where this run already
    judged that configuration on the same data (`scores` and `evidence`, each family with its `judged`
    parameters), its figures are reused: the evaluation would repeat itself exactly."""
    current = registry.champion(client, dataset.name, kind)
    if current is None:
        return None
    logged = registry.run_params(client, current)
    family = logged.get("family", kind.family)
    params = json.loads(logged.get("params", "{}"))
    name = f"champion {family} v{current.version}"
    same_data = logged.get("data_fingerprint") == fingerprint(dataset)
    same_config = judged.get(family) == params  # a family's figures are reusable for the same parameters only
    if same_data and same_config and family in scores:
        return ChampionJudged(name, family, scores[family], evidence)
    with step(f"re-judging champion version {current.version} ({family}) on the same held-out data"):
        evaluation = job.evaluate(dataset, kind, held_out, {family: params}, settings, only=family)
    return ChampionJudged(name, family, evaluation.scores[family], evaluation.predictions)


def _with_champion(evidence: HeldOutPredictions | None, champion: ChampionJudged) -> HeldOutPredictions | None:
    """The held-out predictions with the champion's under its name, where both were kept."""
    if evidence is None or champion.predictions is None or not champion.predictions.has(champion.family):
        return evidence
    if not evidence.same_members(champion.predictions):  # judged on data that changed since: no pairs to draw
        return None
    return evidence.merged(champion.predictions.renamed(champion.family, champion.name))
