"""LightGBM's fast single-row prediction, for the service's per-request path.

`Booster.predict` builds a predictor, parses its parameters and sets up a thread team on every call: about 130 µs
for one row of the demo's churn model, of which the trees themselves take a few. LightGBM's C API has a path
made for one row at a time (`LGBM_BoosterPredictForMatSingleRowFastInit` once, then
`LGBM_BoosterPredictForMatSingleRowFast` per row: the configuration and buffers are kept between calls); the
Python package does not expose it (LightGBM issue #6913), so it is called here through the package's own loaded
library. It runs the same trees with the same arithmetic as the batch path: a row's prediction is bit for bit the
one `Booster.predict` gives it in a batch (tests/serving/test_fast_path.py checks every member of a community).
"""

from __future__ import annotations

import ctypes
import threading
from enum import IntEnum
from functools import lru_cache
from typing import Any

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _safe_call

_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


class Output(IntEnum):
    """What a prediction returns (LightGBM's C_API_PREDICT_* numbers)."""

    normal = 0  # the objective's transform of the raw score (a probability for a binary objective)
    raw = 1  # the raw score
    leaves = 2  # the leaf index of the row in every tree


@lru_cache(maxsize=1)
def _fast_call() -> Any:
    """`LGBM_BoosterPredictForMatSingleRowFast` with its argument types declared, on a handle of its own (the
    lightgbm package's function objects are left as they are)."""
    function = ctypes.CDLL(_LIB._name).LGBM_BoosterPredictForMatSingleRowFast
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function


class SingleRow:
    """Predicts one row at a time with one booster and one kind of output. Safe to share between threads: calls
    take turns (LightGBM keeps one buffer per configuration), each lasting microseconds."""

    def __init__(self, booster: lgb.Booster, output: Output) -> None:
        self.booster = booster  # the configuration points into the booster: it must live as long
        self.columns = booster.num_feature()
        # What `Booster.predict` scores with by default: up to the best iteration where early stopping set one.
        iterations = booster.best_iteration
        size = ctypes.c_int64(0)
        _safe_call(
            _LIB.LGBM_BoosterCalcNumPredict(
                booster._handle,
                ctypes.c_int(1),
                ctypes.c_int(int(output)),
                ctypes.c_int(0),
                ctypes.c_int(iterations),
                ctypes.byref(size),
            )
        )
        self.size = int(size.value)
        self._config = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(int(output)),
                ctypes.c_int(0),
                ctypes.c_int(iterations),
                ctypes.c_int(_FLOAT64),
                ctypes.c_int32(self.columns),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(self._config),
            )
        )
        self._lock = threading.Lock()
        self._length = ctypes.byref(ctypes.c_int64(0))
        self._fast = _fast_call()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Rows x features (float64) -> rows x outputs: each row through the single-row path."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.columns:
            raise ValueError(f"expected rows of {self.columns} features, got an array of shape {x.shape}")
        out = np.empty((len(x), self.size), dtype=np.float64)
        # Addresses as plain integers: numpy's `ctypes.data_as` costs more than the call into LightGBM.
        rows, results = x.ctypes.data, out.ctypes.data
        row_bytes, result_bytes = x.strides[0], out.strides[0]
        fast, config, length = self._fast, self._config, self._length
        with self._lock:
            for i in range(len(x)):
                if fast(config, rows + i * row_bytes, length, results + i * result_bytes) != 0:
                    _safe_call(-1)  # raises LightGBM's last error
        return out

    def __del__(self) -> None:
        config = getattr(self, "_config", None)
        if config is not None and config.value:
            _LIB.LGBM_FastConfigFree(config)
            self._config = None
