"""What a training run costs: median iteration time and peak memory, in ``RUN/train_stats.json``.

Rank 0 times every iteration of its own process (loading the batch, the forward pass, backward
and the optimizer step; not logging, validation or checkpoint writes) and writes the summary
next to each checkpoint, so a finished run's file covers the iterations this process trained
(a resumed run: those since the resume). The median skips the first iterations (warm-up:
allocator growth, oneDNN/cuDNN kernel selection).

Peak memory: on CUDA the allocator's peak (``torch.cuda.max_memory_allocated``) since the run
started. On CPU the process's peak resident set: ``ru_maxrss`` when it rose during the run
(exact), else, when an earlier, larger job in the same process (``decseg compare`` runs its
cells in one process by default) had set it higher, the largest resident size seen at the end
of an iteration (a lower bound; ``peak_rss_exact`` is then false).
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from decseg.io import atomic_write_text

STATS_NAME = "train_stats.json"
GB = 1024 ** 3
MAX_WARMUP = 5


def _rss_bytes() -> int:
    # /proc/self/statm is cheap (no psutil): its second field is the resident pages
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # Linux reports KiB, macOS bytes


def warmup_count(n: int) -> int:
    """Iterations left out of the median: up to 5, and at most half of those timed."""
    return min(MAX_WARMUP, n // 2)


class RunStats:
    """``begin()`` / ``end()`` around each iteration; ``summary()`` and ``write(run_dir)``."""

    def __init__(self, device: torch.device, start_iteration: int, world_size: int = 1):
        self.device = device
        self.start_iteration = start_iteration
        self.world_size = world_size
        self.seconds: list[float] = []
        self._t: float | None = None
        self.maxrss_before = _maxrss_bytes()
        self.sampled_rss = _rss_bytes()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def begin(self) -> None:
        self._t = time.perf_counter()

    def end(self) -> None:
        if self._t is None:
            return
        self.seconds.append(time.perf_counter() - self._t)
        self._t = None
        self.sampled_rss = max(self.sampled_rss, _rss_bytes())

    def summary(self, iteration: int | None = None) -> dict:
        """The figures so far; ``iteration``: the iteration the run's last.pt now holds."""
        n = len(self.seconds)
        warm = warmup_count(n)
        timed = self.seconds[warm:]
        maxrss = _maxrss_bytes()
        exact = maxrss > self.maxrss_before
        out = {
            "iteration": iteration,
            "iteration_seconds": statistics.median(timed) if timed else None,
            "iterations_timed": len(timed),
            "warmup_iterations": warm,
            "from_iteration": self.start_iteration,
            "device": str(self.device),
            "world_size": self.world_size,
            "peak_rss_gb": (max(maxrss, self.sampled_rss) if exact else self.sampled_rss) / GB,
            "peak_rss_exact": exact,
        }
        if self.device.type == "cuda":
            out["peak_gpu_gb"] = torch.cuda.max_memory_allocated(self.device) / GB
        return out

    def write(self, run_dir: Path, iteration: int) -> None:
        """Written after last.pt: ``iteration`` then says which iteration last.pt holds."""
        atomic_write_text(Path(run_dir) / STATS_NAME, json.dumps(self.summary(iteration), indent=2) + "\n")


def read_stats(run_dir: str | Path) -> dict | None:
    """``RUN/train_stats.json``, or None when the run has none (yet) or it cannot be read."""
    try:
        data = json.loads((Path(run_dir) / STATS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
