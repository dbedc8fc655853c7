"""LightGBM's single-row path and the path table's one-pass explanation, against LightGBM's own batch answers."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from serving.models.families.paths import PathTable
from serving.models.families.single_row import Output, SingleRow


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2_000, 12))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take their own branch
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * x[:, 2].clip(-1, 1) + rng.normal(size=2_000) > 0).astype(int)
    data = lgb.Dataset(x, y, params={"verbose": -1})
    return lgb.train({"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 1}, data, num_boost_round=150)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(300, 12)) * 2
    x[rng.random(x.shape) < 0.15] = np.nan
    return x


def test_single_row_predictions_equal_the_batch_path_bit_for_bit(booster: lgb.Booster, rows: np.ndarray) -> None:
    np.testing.assert_array_equal(SingleRow(booster, Output.normal)(rows)[:, 0], booster.predict(rows))
    np.testing.assert_array_equal(SingleRow(booster, Output.raw)(rows)[:, 0], booster.predict(rows, raw_score=True))
    leaves = SingleRow(booster, Output.leaves)(rows)
    np.testing.assert_array_equal(leaves, booster.predict(rows, pred_leaf=True))
    assert leaves.shape == (300, 150)


def test_a_row_of_the_wrong_width_is_refused(booster: lgb.Booster, rows: np.ndarray) -> None:
    with pytest.raises(ValueError, match="rows of 12 features"):
        SingleRow(booster, Output.raw)(rows[:, :5])


def test_one_pass_explains_the_raw_score_and_contributions_exactly(booster: lgb.Booster, rows: np.ndarray) -> None:
    table = PathTable.of(booster)
    leaves = SingleRow(booster, Output.leaves)(rows)
    explained = [table.explain(row) for row in leaves]
    raw = np.array([r for r, _ in explained])
    np.testing.assert_array_equal(raw, booster.predict(rows, raw_score=True))  # summed in LightGBM's order
    np.testing.assert_array_equal(np.array([c for _, c in explained]), table.contributions(booster, rows))
    # path attribution: each member's contributions add up to their raw score less the trees' mean
    np.testing.assert_allclose(np.array([c.sum() for _, c in explained]) + table.bias, raw, rtol=0, atol=1e-9)
