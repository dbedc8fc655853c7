"""Batch inference with a dataset's champions: every member scored, win-back and recommendation push lists.

The same champions and functions as the service (serving/models/champions.py, tiers.score_snapshot), so a file
written here agrees with what the API answers; every run is appended to the prediction log for monitoring.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from features.common.errors import DataError
from features.common.progress import step
from features.dataset.privacy import with_marketing_consent
from features.dataset.store import Dataset, write_parquet_atomic
from features.pipelines import engines
from features.pipelines.engines import Engine
from features.pipelines.snapshots import Snapshot, SnapshotSettings, build_snapshot, resolve_as_of
from serving.models.base import ItemModel, ListRules
from serving.models.champions import Champion, Champions, load_champions, untrained, with_catalogue
from serving.models.kinds import UPLIFT, VALUE, ModelKind, Task, kinds_of
from serving.models.tiers import TierSettings, member_tiers, score_snapshot, tier_shares, tiers_unavailable
from serving.prediction_log import PredictionLog
from serving.profiles import Profiler, flattened, held_names, profile_rules


class ScoreSummary(BaseModel):
    dataset: str
    as_of: date
    members: int
    models: dict[str, dict[str, str]]  # kind -> name, version, family
    tier_shares: dict[str, float]  # empty where there are no tiers (see `unavailable`)
    missing: dict[str, str]  # member kinds without a champion -> how to train one
    unavailable: dict[str, str]  # outputs not written -> why (the tiers, without churn and value champions)
    out: str


def check_out_path(path: Path) -> None:
    """Say so before any work, not after it, when the output file type is not one we write."""
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise DataError(f"--out {path}: use a .parquet or .csv file name")


def write_table(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix.lower() == ".parquet":
        write_parquet_atomic(frame, path)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)


def snapshot_features(dataset: Dataset, as_of: date, horizon_days: int = 90) -> pd.DataFrame:
    """The feature snapshot as of `as_of`, built (or reused) first."""
    build_snapshot(dataset, SnapshotSettings(as_of=as_of, horizon_days=horizon_days))
    return Snapshot(dataset, as_of).features()


def member_champions(dataset: Dataset, kinds: list[ModelKind] | None = None) -> Champions:
    """The member champions asked for (each must exist), else every one the dataset has (at least one)."""
    if kinds is not None:
        return load_champions(dataset.home, dataset.name, kinds)
    every = kinds_of(Task.member)
    champions = load_champions(dataset.home, dataset.name, every, optional=True)
    if not champions.of(Task.member):
        raise DataError(f"no member model for dataset {dataset.name!r} to score with: {untrained(dataset.name, every)}")
    return champions


def score_members(
    dataset: Dataset,
    as_of: date,
    tiers: TierSettings | None = None,
    champions: Champions | None = None,
    kinds: list[ModelKind] | None = None,
) -> tuple[pd.DataFrame, Champions]:
    """member_id, each member champion's output (of `kinds`, else every one there is), the tier (where there are
    churn and value champions) and top_reasons for every member known before `as_of`."""
    champions = champions or member_champions(dataset, kinds)
    features = snapshot_features(dataset, as_of)
    if engines.selected() is Engine.spark:
        from serving.models.spark_scoring import score_on_spark

        with step(f"scoring {len(features):,} members as of {as_of} on Spark"):
            out = score_on_spark(Snapshot(dataset, as_of).features_path, features, champions)
            if tiers_unavailable(champions) is None:
                out.insert(len(out.columns) - 1, "tier", member_tiers(out, features, tiers))
        return out, champions
    with step(f"scoring {len(features):,} members as of {as_of}"):
        features = champions.prepare(features)
        out = score_snapshot(features, champions, tiers)
        explaining = champions.explaining()
        assert explaining is not None  # member_champions has at least one
        out["top_reasons"] = [", ".join(r) for r in explaining.model.top_reasons(features)]
    return out, champions


def log_batch(
    dataset: Dataset, endpoint: str, records: list[dict[str, Any]], versions: dict[str, str], as_of: date
) -> None:
    """Batch answers go to the prediction log like the service's: monitoring compares what was predicted."""
    PredictionLog(dataset.home, dataset.name).write(endpoint, records, versions, time.perf_counter(), as_of=as_of)


def score(
    dataset: Dataset,
    as_of: date,
    out: Path,
    tiers: TierSettings | None = None,
    kinds: list[ModelKind] | None = None,
) -> ScoreSummary:
    """Every member scored by the member champions of `kinds` (else every one the dataset has), written to `out`
    and logged; the summary says which member kinds have no champion and what was left out for it."""
    check_out_path(out)
    frame, champions = score_members(dataset.require(), as_of, tiers, kinds=kinds)
    for champion in champions.of(Task.member):  # the file names the models it came from, wherever it goes
        frame[f"{champion.kind.name}_model"] = f"{champion.family} v{champion.version}"
    frame = frame.merge(segment_columns(dataset, as_of, frame, champions), on="member_id", how="left")
    write_table(frame, out)
    members = champions.described(*[c.kind for c in champions.of(Task.member)])
    provenance = [f"{c.kind.name}_model" for c in champions.of(Task.member)]
    records = frame.drop(columns=["top_reasons", "segments", "tags", *provenance]).to_dict("records")
    log_batch(dataset, "batch/score", records, champions.versions(Task.member), as_of)
    return ScoreSummary(
        dataset=dataset.name,
        as_of=as_of,
        members=len(frame),
        models=members,
        tier_shares=tier_shares(frame["tier"]) if "tier" in frame else {},
        missing={k.name: k.train_command(dataset.name) for k in champions.missing(kinds or kinds_of(Task.member))},
        unavailable={} if (why := tiers_unavailable(champions)) is None else {"tier": why},
        out=str(out),
    )


class ProfileSummary(BaseModel):
    dataset: str
    as_of: date
    members: int
    models: dict[str, dict[str, str]]  # kind -> name, version, family
    segments: dict[str, int]  # members per segment
    learned: dict[str, int]  # members per learned type (none: the members carry a persona)
    tags: dict[str, int]  # members per tag
    unknown: dict[str, str]  # fields and rules this dataset cannot tell, and why
    out: str


def _profiler(dataset: Dataset, as_of: date, champions: Champions) -> tuple[Profiler, pd.DataFrame]:
    """The profiler of the snapshot as of `as_of` for these champions' outputs, and the snapshot's features."""
    features = snapshot_features(dataset, as_of)
    outputs = [c.kind.output for c in champions.of(Task.member)]
    if tiers_unavailable(champions) is None:
        outputs.append("tier")
    columns = [c for c in features.columns if c != "member_id"]
    return Profiler.open(dataset, Snapshot(dataset, as_of), profile_rules(), columns, outputs), features


def _scored(
    dataset: Dataset, as_of: date, scores: pd.DataFrame | None, champions: Champions | None
) -> tuple[pd.DataFrame | None, Champions]:
    """Batch scores (those given, else the member champions' there are) and the champions."""
    champions = champions or load_champions(dataset.home, dataset.name, kinds_of(Task.member), optional=True)
    if scores is None and champions.of(Task.member):
        scores, _ = score_members(dataset, as_of, champions=champions)
    return scores, champions


def profiled(
    dataset: Dataset, as_of: date, scores: pd.DataFrame | None = None, champions: Champions | None = None
) -> tuple[list[dict[str, Any]], Champions]:
    """Every member's profile as of `as_of` (features/profiles, serving/profiles.py): scored by the member
    champions there are, unless `scores` (batch scoring's frame) is given."""
    scores, champions = _scored(dataset, as_of, scores, champions)
    profiler, features = _profiler(dataset, as_of, champions)
    with step(f"answering {len(features):,} members' profiles"):
        return profiler.batch(features, scores), champions


def segment_table(
    dataset: Dataset, as_of: date, scores: pd.DataFrame | None = None, champions: Champions | None = None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """member_id, segments and tags (lists) of every member, and the rules left out with why: the rules alone,
    without the rest of a profile."""
    scores, champions = _scored(dataset, as_of, scores, champions)
    profiler, features = _profiler(dataset, as_of, champions)
    ids, segments, tags, left_out = profiler.memberships(features, scores)
    frame = pd.DataFrame(
        {"member_id": ids, "segments": held_names(segments, len(ids)), "tags": held_names(tags, len(ids))}
    )
    return frame, left_out


def segment_columns(dataset: Dataset, as_of: date, scores: pd.DataFrame, champions: Champions) -> pd.DataFrame:
    """member_id, segments and tags (|-separated): the columns batch scoring adds to every member's row."""
    frame, _ = segment_table(dataset, as_of, scores, champions)
    return frame.assign(segments=frame["segments"].map("|".join), tags=frame["tags"].map("|".join))


AUDIENCE_KINDS = ("segment", "tag")


def memberships(dataset: Dataset, as_of: date, kind: str) -> pd.DataFrame:
    """(member_id, segment): a row per member and each segment (kind "segment") or tag ("tag") they are in, and
    one "(none)" row for a member in none: how health splits by segment or tag."""
    frame, _ = segment_table(dataset, as_of)
    rows = [
        (m, name)
        for m, names in zip(frame["member_id"], frame[f"{kind}s"], strict=True)
        for name in names or ["(none)"]
    ]
    return pd.DataFrame(rows, columns=["member_id", "segment"])


def audience_of(
    dataset: Dataset,
    as_of: date,
    named: str,
    scores: pd.DataFrame | None = None,
    champions: Champions | None = None,
) -> list[str]:
    """The members of `named` (segment:NAME or tag:NAME) as of `as_of`, in the snapshot's order; a clear error
    for a name no file declares, or a rule this dataset cannot tell. `scores`: batch scores already made."""
    kind, _, name = named.partition(":")
    rules = profile_rules()
    declared = {"segment": rules.segments, "tag": rules.tags}.get(kind)
    if declared is None or not name:
        raise DataError(f"{named!r}: an audience of the profile is segment:NAME or tag:NAME")
    if name not in {r.name for r in declared}:
        raise DataError(
            f"{named!r}: no {kind} {name!r} in {rules.files[kind + 's']} (declared: "
            f"{', '.join(r.name for r in declared) or 'none'})"
        )
    frame, left_out = segment_table(dataset, as_of, scores, champions)
    if why := left_out.get(f"{kind}:{name}"):
        raise DataError(f"{named!r}: this dataset cannot tell it: {why}")
    return [m for m, names in zip(frame["member_id"], frame[f"{kind}s"], strict=True) if name in names]


def profile(dataset: Dataset, as_of: date, out: Path) -> ProfileSummary:
    """Every member's profile, a row each, written to `out`; the summary counts members per segment and tag."""
    check_out_path(out)
    profiles, champions = profiled(dataset.require(), as_of)
    frame = flattened(profiles)
    for champion in champions.of(Task.member):
        frame[f"{champion.kind.name}_model"] = f"{champion.family} v{champion.version}"
    write_table(frame, out)
    learned = pd.Series([p["learned_segment"] for p in profiles], dtype=object).dropna()
    return ProfileSummary(
        dataset=dataset.name,
        as_of=as_of,
        members=len(frame),
        models=champions.described(*[c.kind for c in champions.of(Task.member)]),
        segments=_counts([p["segments"] for p in profiles]),
        learned={str(k): int(v) for k, v in learned.value_counts().items()},
        tags=_counts([p["tags"] for p in profiles]),
        unknown=profiles[0]["unknown"] if profiles else {},
        out=str(out),
    )


def _counts(lists: list[list[str]]) -> dict[str, int]:
    """Members per name, the most first."""
    return dict(Counter(name for names in lists for name in names).most_common())


def winback(
    dataset: Dataset,
    as_of: date,
    out: Path,
    top: int | None = None,
    by: str = VALUE.name,
    audience: str | None = None,
) -> dict[str, int]:
    """Churn-risk members who gave marketing consent, a push list: the most expected value first, or (`by`
    "uplift") the largest lift the uplift champion expects from the push first, leaving out the members it
    expects the push not to move or to put off. `audience`: only its members (segment:NAME or tag:NAME)."""
    check_out_path(out)
    frame, champions = score_members(dataset.require(), as_of)
    if "tier" not in frame:  # who is at risk comes from the tiers
        raise DataError(f"a win-back list needs the churn-risk tier: {tiers_unavailable(champions)}")
    at_risk = frame[frame["tier"] == "churn_risk"]
    if audience is not None:
        among = set(audience_of(dataset, as_of, audience, frame, champions))
        at_risk = at_risk[at_risk["member_id"].astype(str).isin(among)]
    if by == UPLIFT.name:
        champions[UPLIFT]  # none: the error says how to train one
        at_risk = at_risk[at_risk[UPLIFT.output] > 0]
    at_risk = at_risk.sort_values(UPLIFT.output if by == UPLIFT.name else VALUE.output, ascending=False, kind="stable")
    kept, left_out = with_marketing_consent(dataset, at_risk["member_id"].astype(str).tolist())
    listed = at_risk[at_risk["member_id"].isin(set(kept))].head(top)
    write_table(listed.reset_index(drop=True), out)
    return {"members": len(listed), "without_consent": left_out}


def item_lists(table: pd.DataFrame) -> tuple[dict[str, list[dict[str, Any]]], dict[str, bool]]:
    """Each member's ranked items (item_id, rank, score) and whether they were a cold start, from an item model's
    member_id, rank, item_id, score, cold_start table, in one pass (a group-by per member took 20 s for 17,000
    members of the demo)."""
    items: dict[str, list[dict[str, Any]]] = {}
    cold: dict[str, bool] = {}
    columns = ("member_id", "item_id", "rank", "score", "cold_start")
    for member, item, rank, score, cold_start in zip(*(table[c].to_numpy() for c in columns), strict=True):
        items.setdefault(member, []).append({"item_id": str(item), "rank": int(rank), "score": float(score)})
        cold[member] = bool(cold_start)
    return items, cold


def recommendation_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per member with its ranked items, for the prediction log."""
    return [{"member_id": str(member), "items": ranked} for member, ranked in item_lists(table)[0].items()]


class RecommendRequest(ListRules):
    """A push list's rules: the lists' own, and whether consent recorded outside the dataset counts."""

    consent_recorded_elsewhere: bool = False


def recommend(
    dataset: Dataset, kind: ModelKind, out: Path, request: RecommendRequest, members: list[str] | None = None
) -> tuple[pd.DataFrame, Champion, int]:
    """The champion's lists for `members` (default: every member of the latest snapshot) who gave marketing
    consent (a push list), items imported since training among them (never before their published_at; with
    `published_since`, only items published on or after it); written to `out` (each row naming the model:
    "als v3") and logged. Returns the
    table, the champion and how many members were left out for want of consent."""
    check_out_path(out)
    champions = load_champions(dataset.home, dataset.name, [kind])
    with_catalogue(dataset, champions)  # items imported since training, placed from their attributes
    champion = champions[kind]
    model = champion.model
    assert isinstance(model, ItemModel)
    latest = resolve_as_of(dataset, "latest")
    wanted = members if members is not None else snapshot_features(dataset, latest)["member_id"].tolist()
    wanted, left_out = with_marketing_consent(dataset, wanted, request.consent_recorded_elsewhere)
    table = model.recommend(
        wanted,
        request.k,
        request.exclude_seen,
        list(request.exclude),
        request.category,
        published_since=request.published_since,
    )
    write_table(table.assign(model=f"{champion.family} v{champion.version}"), out)
    log_batch(dataset, f"batch/{kind.name}", recommendation_records(table), {kind.name: champion.version}, latest)
    return table, champion, left_out


def similar_items(dataset: Dataset, kind: ModelKind, out: Path, k: int) -> tuple[pd.DataFrame, Champion]:
    """For every item the champion knows, its k most similar items (NotOffered for a family that has none)."""
    check_out_path(out)
    champion = load_champions(dataset.home, dataset.name, [kind])[kind]
    model = champion.model
    assert isinstance(model, ItemModel)
    assert kind.items is not None
    of = kind.items.id_column  # product_id: the item each list is for
    frames = [model.similar_items(str(item), k).assign(**{of: str(item)}) for item in model.item_ids]
    table = pd.concat(frames, ignore_index=True)[[of, "rank", "item_id", "score"]]
    write_table(table.assign(model=f"{champion.family} v{champion.version}"), out)
    return table, champion
