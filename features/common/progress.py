"""Progress lines for long work, on stderr so that stdout stays clean for results."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def step(message: str) -> Iterator[None]:
    """Logs `message`, runs the block, then logs how long it took."""
    say(f"• {message} ...")
    started = time.perf_counter()
    yield
    say(f"  done in {time.perf_counter() - started:.1f} s")
