"""Stated samples: at most so many of a population, drawn the same way every time."""

from __future__ import annotations

import numpy as np


def drawn(count: int, size: int, seed: int = 0) -> np.ndarray | None:
    """Sorted positions of `size` of `count` things drawn without replacement (the same for the same seed), or
    None where there are no more than `size`: then every one is kept."""
    if count <= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))
