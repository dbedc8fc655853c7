"""Writes a benchmark's result table to experiments/results/, with how and where it was measured."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"


def write_results(name: str, title: str, explanation: str, table: str) -> Path:
    """Prints the table and writes `results/<name>.md` with the title, the explanation and the machine."""
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    path = RESULTS_DIR / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# {title}\n\n{explanation.strip()}\n\nMachine: {machine}, {time.strftime('%Y-%m-%d')}.\n\n{table}"
    )
    print(table)
    print(f"written to {path}")
    return path
