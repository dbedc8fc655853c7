"""Batch scoring of every member on Spark: the champions score the feature snapshot partition by partition, on the
executors, with what depends on the whole population (the model inputs' BG/NBD fit and RFM distributions) fitted
once on the driver: so every member gets exactly what scoring in this process gives them (tested)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from features.pipelines import engines
from serving.models.base import MemberModel
from serving.models.champions import Champions
from serving.models.inputs import InputContext, has_inputs
from serving.models.kinds import Task


def score_on_spark(features_path: Path, population: pd.DataFrame, champions: Champions) -> pd.DataFrame:
    """member_id, each member champion's output and top_reasons for every row of the snapshot at
    `features_path`, in `population`'s order. The executors read the snapshot themselves: on a cluster it must be
    where they can reach it (a state home on shared storage)."""
    members = champions.of(Task.member)
    contexts: list[InputContext] = []
    for champion in members:
        assert isinstance(champion.model, MemberModel)
        context = champion.model.input_context(population)
        if context is not None:
            contexts.append(context)
    # The function travels to the executors with the fitted models it closes over, not the champions (whose module
    # imports MLflow: seconds in every Python worker).
    models = [(str(c.kind.output), c.model) for c in members]
    outputs = [output for output, _ in models]
    explaining = champions.explaining()
    assert explaining is not None
    reasons_model = explaining.model

    def score_partition(parts: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for part in parts:
            prepared = part
            # As `Champions.prepare` does for the whole population: the first model's inputs serve the next.
            for context in contexts:
                if not has_inputs(prepared, context.horizon_days):
                    prepared = context.apply(prepared)
            out = pd.DataFrame({"member_id": part["member_id"].astype(str).to_numpy()})
            for output, model in models:
                out[output] = model.predict(prepared)
            out["top_reasons"] = [", ".join(r) for r in reasons_model.top_reasons(prepared)]
            yield out

    schema = ", ".join(["member_id string", *(f"{o} double" for o in outputs), "top_reasons string"])
    session = engines.spark_session()
    scored = session.read.parquet(str(features_path)).mapInPandas(score_partition, schema).toPandas()
    order = pd.Index(scored["member_id"]).get_indexer(population["member_id"].astype(str))
    if (order < 0).any() or len(scored) != len(population):
        raise RuntimeError(f"Spark scored {len(scored):,} rows for {len(population):,} members of {features_path}")
    return scored.iloc[order].reset_index(drop=True)
