"""Runs a command and measures it: wall seconds and the peak memory of its whole process tree (a Spark JVM is a
child of the Python that started it, so a single process's peak would miss it)."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_mb: float
    returncode: int
    stdout: str
    stderr: str


def tree_rss_mb(process: psutil.Process) -> float:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def run_measured(command: list[str], env: dict[str, str], cwd: Path | None = None, every: float = 0.2) -> Measured:
    """Runs `command` to the end, sampling its process tree's resident memory every `every` seconds."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        watched = psutil.Process(process.pid)
        while not done.is_set():
            try:
                peak = max(peak, tree_rss_mb(watched))
            except psutil.NoSuchProcess:
                return
            time.sleep(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    done.set()
    sampler.join()
    return Measured(round(time.perf_counter() - started, 1), round(peak), process.returncode, stdout, stderr)
