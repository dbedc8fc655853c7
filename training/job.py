"""The training job, the same for every kind: tune the learned families on validation data, judge every family on
the same held-out data, choose the candidate, fit it, log it all to MLflow, register it as the dataset's DATASET.KIND
model and promote it when it beats the champion.

The candidate is the best family by the kind's first gate metric among those that may serve: a learned family
(LightGBM; ALS, BPR, item neighbours, EASE) only if it beats every baseline that can serve on every gate metric,
a baseline (recency, RFM, BG/NBD for churn; run rate, BG/NBD + Gamma-Gamma for value; most popular and buy again
for recommendations) as it is. So after the first `train` of any dataset every kind has a champion, the best
honest predictor there is, and every answer names its family.

Every run logs the same artefacts whatever its kind: its parameters and held-out dates, the candidate's
metrics, rivals.json (baselines and champion), backtest.json (every row behind the metrics), promotion.json,
model_summary.json, the Optuna trials when tuned, and a `promoted` tag. `promote` re-runs the gate for any
registered version of any kind, on that version's own held-out data.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from pydantic import BaseModel

from features.common.errors import DataError
from features.common.home import StateHome
from features.common.progress import say, step
from features.dataset.store import Dataset
from features.pipelines.snapshots import fingerprint, resolve_as_of
from serving.models import pyfunc_model, registry
from serving.models.base import MemberModel
from serving.models.kinds import ModelKind, Target, Task
from training.gate import HeldOutPredictions, Verdict, gate, within_margins
from training.trainers import Fitted, HeldOut, ItemTrainer, MemberTrainer, Trainer, TrainSettings, tuning_plan
from training.uplift import UpliftTrainer

__all__ = ["TrainSettings", "Verdict", "gate", "promote", "train"]

# The per-member held-out predictions a run was judged on, kept with it so `promote` bootstraps the same gate.
PREDICTIONS_ARTIFACT = "held_out_predictions.npz"
# What an uplift model was trained on, logged with its run so that `promote` judges it on the same campaign.
CAMPAIGN_SETTINGS = ("campaign", "outcome", "treatment_arm", "control_arm")


class TrainResult(BaseModel):
    """What a training run did: the registered version, whether it became champion, and against what."""

    kind: str
    family: str  # the candidate's family: what the registered version is
    dataset: str
    as_of: date
    version: str
    run_id: str
    promoted: bool
    reasons: list[str]
    choice: str  # why this family is the candidate
    metrics: dict[str, float]
    rivals: dict[str, dict[str, float]]
    params: dict[str, Any]
    test_cutoffs: list[date]
    split: str  # how the held-out data was chosen (item kinds: time or random-per-item)
    tuning: str  # what Optuna was allowed ("none": every family kept its defaults)
    seconds: float


# How each kind's target is trained: labels at monthly cutoffs (churn, value), held-out interactions (items), or a
# randomized campaign's arms (uplift, a member kind learned from exposures instead of labels).
TRAINERS: dict[Target, type[Trainer]] = {
    Target.binary: MemberTrainer,
    Target.amount: MemberTrainer,
    Target.items: ItemTrainer,
    Target.uplift: UpliftTrainer,
}


def trainer(kind: ModelKind) -> Trainer:
    """A new trainer for one run: what a trainer prepares during a run (uplift: the campaign's members) is that
    run's, never a later one's, whose data may have changed."""
    return TRAINERS[kind.target]()


def must_beat(
    family: str,
    scores: dict[str, dict[str, float]],
    servable: list[str],
    learned: list[str],
    references: list[str] | None = None,
    parts: list[str] | None = None,
) -> dict[str, dict[str, float]]:
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
    scores: dict[str, dict[str, float]],
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


def train(dataset: Dataset, kind: ModelKind, settings: TrainSettings) -> TrainResult:
    started = time.perf_counter()
    dataset.require()
    job = trainer(kind)
    as_of = resolve_as_of(dataset, settings.as_of)
    held_out = job.held_out(dataset, kind, settings, as_of)
    client = registry.connect(dataset.home)
    experiment_id = registry.experiment(client, dataset.home, kind.registered_name(dataset.name))
    say(f"{kind.registered_name(dataset.name)} as of {as_of}: judged on {', '.join(map(str, held_out.tests))}")

    servable, learned = job.servable(kind), job.learned(kind)
    if settings.family is not None and settings.family not in servable:
        raise DataError(f"--family {settings.family}: {kind.name} is served by {', '.join(servable)}")
    tuned, trials = {}, pd.DataFrame()
    plan = tuning_plan(settings, kind.task)
    tuning = str(plan) if plan else "none"
    if plan is None:
        say("not tuned: every family keeps its default parameters (--trials or --budget-seconds tunes)")
    else:
        validation = ", ".join(map(str, held_out.validation))
        with step(f"tuning on {validation} within {plan} (--trials, --budget-seconds; 0 turns tuning off)"):
            study = f"{dataset.name}-{kind.name}-{as_of}-{int(time.time())}"
            tuned, trials = job.tune(dataset, kind, held_out, settings, plan, study)
    judged = {family: {**job.family_params(family), **tuned.get(family, {})} for family in servable}
    evaluation = job.evaluate(dataset, kind, held_out, judged, settings)
    references, parts = job.references(kind), job.parts(kind)
    evidence = evaluation.predictions
    family, choice = choose(kind, evaluation.scores, servable, learned, references, evidence, parts, settings.seed)
    if settings.family is not None and settings.family != family:
        if settings.family not in evaluation.scores:
            raise DataError(f"--family {settings.family}: it could not be judged on this data (see above)")
        family, choice = settings.family, f"{settings.family} was asked for (the choice would be {family})"
    say(choice)
    params = judged[family]
    metrics = evaluation.scores[family]
    rivals = {name: m for name, m in evaluation.scores.items() if name != family}
    champion = _champion_metrics(
        job, dataset, kind, client, held_out, settings, evaluation.scores, judged, evaluation.predictions
    )
    judged_against = must_beat(family, rivals, servable, learned, references, parts.get(family))
    if champion is not None:
        rivals[champion.name] = judged_against[champion.name] = champion.metrics
        evidence = _with_champion(evidence, champion)
    verdict = gate(kind, metrics, judged_against, evidence, family, settings.seed)
    if verdict.comparisons:
        say(f"the gate, {family} against its rivals (gain: positive is better; 95% intervals where paired):")
        say(verdict.table())

    with step(f"fitting the {kind.name} model ({family}) that serves as of {as_of}"):
        fitted = job.fit(dataset, kind, as_of, family, params, settings)

    logged = {
        "dataset": dataset.name,
        "kind": kind.name,
        "family": family,
        "data_fingerprint": fingerprint(dataset),
        "as_of": str(as_of),
        "horizon_days": settings.horizon_days,
        "training_cutoffs_count": settings.training_cutoffs,
        "k": settings.k,
        "split": settings.split,
        **({f: getattr(settings, f) for f in CAMPAIGN_SETTINGS if getattr(settings, f)} if settings.campaign else {}),
        "tuning": tuning,
        "seed": settings.seed,
        "params": json.dumps(params, sort_keys=True),
        "judged_params": json.dumps(judged, sort_keys=True),  # what every family was judged with
        **held_out.params(),
        **fitted.params,
    }
    promoted_tag = str(verdict.passed and settings.promote)
    run_name = f"{kind.registered_name(dataset.name)} {family} {as_of}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags({"dataset": dataset.name, "kind": kind.name, "family": family, "promoted": promoted_tag})
        mlflow.log_params({**logged, **{f"param.{k}": v for k, v in params.items()}})
        _log_evaluation(metrics, rivals, evaluation.rows, verdict, choice, evidence)
        mlflow.log_dict(fitted.model.summary(), "model_summary.json")
        if not trials.empty:
            mlflow.log_text(trials.to_csv(index=False), "optuna_trials.csv")
        info = _log_model(fitted, kind, dataset.name)
    version = str(info.registered_model_version)

    promoted, reasons = _conclude(client, dataset.name, kind, version, verdict.reasons, settings.promote)
    if promoted_tag != str(promoted):  # the model would not load: the run says what happened
        client.set_tag(run.info.run_id, "promoted", str(promoted))
    return TrainResult(
        kind=kind.name,
        family=family,
        dataset=dataset.name,
        as_of=as_of,
        version=version,
        run_id=run.info.run_id,
        promoted=promoted,
        reasons=reasons,
        choice=choice,
        metrics=metrics,
        rivals=rivals,
        params=params,
        test_cutoffs=held_out.tests,
        split=settings.split,
        tuning=tuning,
        seconds=round(time.perf_counter() - started, 1),
    )


def _log_evaluation(
    metrics: dict[str, float],
    rivals: dict[str, dict[str, float]],
    rows: list[dict[str, Any]],
    verdict: Verdict,
    choice: str,
    evidence: HeldOutPredictions | None,
) -> None:
    mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    mlflow.log_metrics({f"rival_{_slug(r)}_{k}": v for r, values in rivals.items() for k, v in values.items()})
    mlflow.log_dict(rivals, "rivals.json")
    mlflow.log_dict({"rows": rows}, "backtest.json")
    mlflow.log_dict(
        {
            "passed": verdict.passed,
            "reasons": verdict.reasons,
            "choice": choice,
            "comparisons": [c.row() for c in verdict.comparisons],
        },
        "promotion.json",
    )
    if evidence is not None and evidence.cutoffs:  # what `promote` bootstraps the same comparisons from
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / PREDICTIONS_ARTIFACT
            evidence.save(path)
            mlflow.log_artifact(str(path))


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


@dataclass(frozen=True)
class ChampionJudged:
    name: str  # "champion FAMILY vN"
    family: str
    metrics: dict[str, float]
    predictions: HeldOutPredictions | None  # its per-member predictions under `family`, where kept


def _with_champion(evidence: HeldOutPredictions | None, champion: ChampionJudged) -> HeldOutPredictions | None:
    """The held-out predictions with the champion's under its name, where both were kept."""
    if evidence is None or champion.predictions is None or not champion.predictions.has(champion.family):
        return evidence
    if not evidence.same_members(champion.predictions):  # judged on data that changed since: no pairs to draw
        return None
    return evidence.merged(champion.predictions.renamed(champion.family, champion.name))


def _champion_metrics(
    job: Trainer,
    dataset: Dataset,
    kind: ModelKind,
    client: Any,
    held_out: HeldOut,
    settings: TrainSettings,
    scores: dict[str, dict[str, float]],
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


def _log_model(fitted: Fitted, kind: ModelKind, dataset: str) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = fitted.model.save(Path(tmp))
        signature = None
        if isinstance(fitted.model, MemberModel):
            with warnings.catch_warnings():
                # MLflow warns that integer columns cannot hold missing values; snapshot counts are zero-filled,
                # never missing, and declaring them float would make MLflow refuse the snapshot's int64 columns.
                warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
                prediction = pd.Series(fitted.model.predict(fitted.example), name="prediction")
                signature = infer_signature(fitted.example, prediction)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(pyfunc_model.__file__)),
                artifacts=artifacts,
                signature=signature,
                input_example=fitted.example,
                registered_model_name=kind.registered_name(dataset),
                # Named, not inferred: inference would load the model in a subprocess on every training run.
                pip_requirements=[f"mlflow=={mlflow.__version__}", *_requirements(kind)],
            )


def _requirements(kind: ModelKind) -> list[str]:
    from importlib.metadata import version

    library = "lightgbm" if kind.task is Task.member else "implicit"
    return [f"{library}=={version(library)}", f"pandas=={pd.__version__}"]


def _conclude(
    client: Any, dataset: str, kind: ModelKind, version: str, reasons: list[str], promote: bool
) -> tuple[bool, list[str]]:
    """Moves the champion alias to `version` when the gate gave no reasons, promotion is on and the registered
    model loads; says which. Returns whether it moved, and every reason it did not."""
    name = kind.registered_name(dataset)
    if not reasons and promote and (problem := registry.unloadable(name, version)):
        reasons = [problem]
    if not reasons and promote:
        registry.set_champion(client, dataset, kind, version)
        say(f"{name} version {version} is the new champion")
        return True, []
    say(f"{name} version {version} registered, champion unchanged: " + ("; ".join(reasons) or "--no-promote"))
    return False, reasons


class PromotionResult(BaseModel):
    kind: str
    dataset: str
    version: str
    promoted: bool
    reasons: list[str]


def promote(home: StateHome, dataset: str, kind: ModelKind, version: str | None = None) -> PromotionResult:
    """Runs the gate again for a registered version of the dataset's model (default: the newest) against the
    dataset's champion today.

    The candidate keeps the held-out metrics and rivals logged with it; the champion's configuration is
    re-trained and judged on the candidate's own held-out data, so both are judged on the same members.
    """
    client = registry.connect(home)
    name = kind.registered_name(dataset)
    registered = registry.versions(client, dataset, kind)
    if not registered:
        raise DataError(f"no {name} model is registered yet; train one with `{kind.train_command(dataset)}`")
    chosen = str(version or registered[-1].version)
    if chosen not in {str(v.version) for v in registered}:
        known = ", ".join(str(v.version) for v in registered)
        raise DataError(f"{name} has no version {chosen} (registered versions: {known})")
    current = registry.champion(client, dataset, kind)
    if current is not None and str(current.version) == chosen:
        return PromotionResult(kind=kind.name, dataset=dataset, version=chosen, promoted=True, reasons=[])
    run = client.get_run(client.get_model_version(name, chosen).run_id)
    params, metrics = run.data.params, run.data.metrics
    candidate = {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")}
    try:
        rivals = json.loads(Path(client.download_artifacts(run.info.run_id, "rivals.json")).read_text())
    except MlflowException as exc:
        raise DataError(
            f"{name} version {chosen} has no recorded rivals (run {run.info.run_id}); it cannot be judged on "
            f"the same held-out data: train it again with `{kind.train_command(dataset)}`"
        ) from exc
    rivals = {r: m for r, m in rivals.items() if not r.startswith("champion")}  # today's champion is re-judged
    family = params.get("family", kind.family)
    settings = TrainSettings(
        horizon_days=int(params["horizon_days"]),
        training_cutoffs=int(params["training_cutoffs_count"]),
        k=int(params["k"]),
        seed=int(params["seed"]),
        split=params.get("split", "time"),
        **{f: params[f] for f in CAMPAIGN_SETTINGS if f in params},
    )
    scores = {**rivals, family: candidate}
    judged = json.loads(params.get("judged_params", "{}")) or {family: json.loads(params["params"])}
    job = trainer(kind)
    evidence = logged_predictions(client, run.info.run_id)
    champion = _champion_metrics(
        job, Dataset(home, dataset), kind, client, HeldOut.from_params(params), settings, scores, judged, evidence
    )
    rivals = must_beat(  # as in training
        family, rivals, job.servable(kind), job.learned(kind), job.references(kind), job.parts(kind).get(family)
    )
    if champion is not None:
        rivals[champion.name] = champion.metrics
        evidence = _with_champion(evidence, champion)
    verdict = gate(kind, candidate, rivals, evidence, family, int(params["seed"]))
    reasons = verdict.reasons or [problem for problem in [registry.unloadable(name, chosen)] if problem]
    if not reasons:
        registry.set_champion(client, dataset, kind, chosen)
        client.set_tag(run.info.run_id, "promoted", "True")
    return PromotionResult(kind=kind.name, dataset=dataset, version=chosen, promoted=not reasons, reasons=reasons)


def logged_predictions(client: Any, run_id: str) -> HeldOutPredictions | None:
    """The per-member held-out predictions a run logged (None: a run of a kind that keeps none, or older)."""
    try:
        return HeldOutPredictions.load(Path(client.download_artifacts(run_id, PREDICTIONS_ARTIFACT)))
    except (MlflowException, OSError):
        return None


def retrain(dataset: Dataset, kinds: list[ModelKind], settings: TrainSettings | None = None) -> list[TrainResult]:
    """Trains each kind again with default settings (monitoring's --retrain); the gate still decides."""
    return [train(dataset, kind, settings or TrainSettings()) for kind in kinds]
