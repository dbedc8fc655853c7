"""The calibrated alert rule on figures made by hand: thresholds from the history, floors, gain-weighted features."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from monitoring.alerts import FLOORS, Profile, assess, calibrate, calibration_pairs, changes


def _profile(
    day: int, *, nulls: float = 0.0, retention: float = 0.8, spend_shift: float = 0.0, channel=None
) -> Profile:
    rng = np.random.default_rng(day)
    features = pd.DataFrame(
        {
            "member_id": [f"M{i}" for i in range(500)],
            "spend_30d": rng.gamma(2.0, 50.0, 500) + spend_shift,
            "eng_7d": rng.poisson(3.0, 500).astype(float),
        }
    )
    mix = pd.Series(channel or {"app": 500, "store": 100, "mini_program": 400})
    return Profile(
        as_of=date(2026, 1, 1),
        scalars={"null:orders.product_id": nulls, "rate:retention": retention},
        mixes={"mix:orders.channel": mix},
        baselines={},
        prices=pd.Series(np.log(np.linspace(10, 100, 20)), index=[f"P{i}" for i in range(20)]),
        features=features,
        predictions=pd.DataFrame(),
    )


def test_calibration_pairs_keep_the_gap_and_step_back_a_month() -> None:
    pairs = calibration_pairs(date(2026, 2, 13), date(2026, 4, 14), 3)
    assert pairs == [
        (date(2025, 12, 15), date(2026, 2, 13)),
        (date(2025, 11, 15), date(2026, 1, 14)),
        (date(2025, 10, 16), date(2025, 12, 15)),
    ]


def test_a_threshold_is_the_margin_times_the_largest_calm_move_at_least_its_floor() -> None:
    history = [(_profile(1, retention=0.80), _profile(2, retention=0.77)), (_profile(3), _profile(4, retention=0.79))]
    calibration = calibrate(history, margin=2.0)
    assert calibration.thresholds["rate:retention"] == pytest.approx(2 * 0.03)
    assert calibration.thresholds["null:orders.product_id"] == FLOORS["null"]  # never moved: its floor
    assert calibration.thresholds["level:orders.price_index"] == FLOORS["level"]


def test_what_moved_more_than_ever_alerts_and_nothing_else() -> None:
    history = [(_profile(1), _profile(2, retention=0.77)), (_profile(3), _profile(4))]
    calibration = calibrate(history, margin=2.0)
    reference = _profile(5)
    assert assess(reference, _profile(6, retention=0.76), calibration, {}, 0.25) == []  # within 0.06
    broken = _profile(6, nulls=1.0, retention=0.55, channel={"app": 560, "store": 0, "mini_program": 440})
    found = {a.statistic: a for a in assess(reference, broken, calibration, {}, 0.25)}
    assert set(found) == {"orders.product_id", "retention", "orders.channel"}
    assert found["orders.product_id"].change == 1.0 and found["retention"].kind == "rate"
    assert found["orders.channel"].change > 20  # -log10 p of a channel that vanished


def test_features_alert_only_when_the_drifted_ones_carry_the_models_gain() -> None:
    history = [(_profile(1), _profile(2)), (_profile(3), _profile(4))]
    calibration = calibrate(history, margin=2.0)
    reference, shifted = _profile(5), _profile(6, spend_shift=80.0)
    assert changes(reference, shifted)["feature:spend_30d"] > calibration.thresholds["feature:spend_30d"]
    unused = assess(reference, shifted, calibration, {"spend_30d": 0.1, "eng_7d": 0.9}, 0.25)
    assert unused == []
    relied_on = assess(reference, shifted, calibration, {"spend_30d": 0.7, "eng_7d": 0.3}, 0.25)
    assert [a.kind for a in relied_on] == ["feature"] and "spend_30d" in relied_on[0].statistic
