"""Timing on a shared machine, for the benchmarks in this folder: progress to stderr, device
synchronisation, and a timer that waits for quiet CPUs and reports other processes' share."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import torch

__all__ = ["Contention", "log", "sync"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- a shared machine -------------------------------------------------------------------------
def _busy_seconds() -> float | None:
    """CPU-seconds all processes have spent busy since boot (/proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


class Contention:
    """Times blocks of work, first waiting (up to ``max_wait`` s) until other processes use
    less than ``threshold`` of the CPUs, and adds up the CPU-seconds other processes took during
    the timed blocks (``others``) and the blocks' wall time (``wall``); reset per table row."""

    def __init__(self, max_wait: float, threshold: float = 0.15) -> None:
        self.max_wait, self.threshold = max_wait, threshold
        self.available = _busy_seconds() is not None
        self.cpus = os.cpu_count() or 1
        self.others = self.wall = 0.0
        self.waited = 0.0

    def share(self) -> float:
        """Fraction of the machine's CPU time other processes used while we were timing."""
        return self.others / (self.wall * self.cpus) if self.wall > 0 else 0.0

    def wait(self) -> None:
        deadline = time.perf_counter() + self.max_wait
        while self.available and self.max_wait > 0:
            start, busy = time.perf_counter(), _busy_seconds()
            time.sleep(0.25)
            elapsed = time.perf_counter() - start
            if (_busy_seconds() - busy) / (elapsed * self.cpus) < self.threshold:
                return
            self.waited += elapsed
            if time.perf_counter() > deadline:
                return

    @contextmanager
    def timed(self, device: torch.device) -> Iterator[SimpleNamespace]:
        self.wait()
        sync(device)
        out = SimpleNamespace(seconds=0.0)
        busy, own, start = _busy_seconds(), time.process_time(), time.perf_counter()
        out.start = start  # perf_counter() at the block's start (for budgets inside it)
        yield out
        sync(device)
        out.seconds = time.perf_counter() - start
        if self.available:
            self.others += max(0.0, (_busy_seconds() - busy) - (time.process_time() - own))
            self.wall += out.seconds
