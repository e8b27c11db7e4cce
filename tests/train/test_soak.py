"""Soak: a long tiny run in a subprocess keeps a flat resident memory and a fixed set of open files.

The child trains the tiniest network (test_resnet encoder at 64 px, no half-scale decoder, no DCF,
no perturbed pass, no generators; batch 2 + 2, fp32, no loader workers). While it runs, the test
samples its resident set size (RSS) and open file descriptors (psutil) a few times a second.
After the warm-up (``WARMUP`` iterations: allocator pools, oneDNN primitive caches, the
TensorBoard writer are in place by then) the RSS may grow by less than 5 % and the open file
descriptors not at all, up to the last training iteration (the final validation and checkpoint
come after it and are not part of the steady state).

The suite runs ``ITERATIONS`` = 700 (8-11 it/s on one core: 70-90 s with the start-up);
``DECSEG_SOAK_ITERATIONS=3000`` runs the long version by hand (280-315 s).

Open descriptors are compared as the fewest seen in the first and in the last ten samples: the
trainer opens log.jsonl for each record and closes it, so a sample can catch one more for a
moment; a leak stays open and raises the floor.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ITERATIONS = int(os.environ.get("DECSEG_SOAK_ITERATIONS", "700"))
WARMUP = 300
LOG_EVERY = 50  # one progress line per 50 iterations: how the test knows where the child is
MAX_RSS_GROWTH = 0.05


def _progress(stderr_file: Path, total: int) -> int:
    text = stderr_file.read_text(errors="replace") if stderr_file.is_file() else ""
    return max(map(int, re.findall(r"^iter (\d+)/%d " % total, text, re.M)), default=0)


@pytest.mark.slow
def test_long_run_keeps_memory_and_open_files_flat(tiny_data, tiny_overrides, subprocess_env, tmp_path):
    assert ITERATIONS > WARMUP + 2 * LOG_EVERY
    run = tmp_path / "soak"
    sets = [o for o in tiny_overrides if not o.startswith("train.log_every=")] + [
        "model.sc=false", "model.dcf=false", "train.spc=false", "train.cc=false",
        f"train.iterations={ITERATIONS}", f"train.val_every={ITERATIONS}", f"train.log_every={LOG_EVERY}"]
    cmd = [sys.executable, "-m", "decseg", "train", "--data", str(tiny_data), "--out", str(run),
           "--set", *sets]
    stderr_file = tmp_path / "stderr.txt"
    samples: list[tuple[float, int, int, int]] = []  # (time, progress, rss, fds)
    t0 = time.time()
    with open(stderr_file, "w") as err:
        proc = subprocess.Popen(cmd, env=subprocess_env, stdout=subprocess.DEVNULL, stderr=err)
        child = psutil.Process(proc.pid)
        try:
            while proc.poll() is None:
                it = _progress(stderr_file, ITERATIONS)
                try:
                    rss, fds = child.memory_info().rss, child.num_fds()
                except psutil.NoSuchProcess:
                    break
                samples.append((time.time() - t0, it, rss, fds))
                if time.time() - t0 > 900:
                    pytest.fail("soak run did not finish within 900 s")
                time.sleep(0.25)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    wall = time.time() - t0
    assert proc.returncode == 0, stderr_file.read_text()[-3000:]

    # steady state: from the first sample past the warm-up to the last one before the final
    # iteration's line (validation and the last checkpoint follow it)
    steady = [s for s in samples if WARMUP <= s[1] < ITERATIONS]
    assert len(steady) >= 10, f"too few samples in the steady state: {len(steady)} of {len(samples)}"
    warm, end = steady[0], steady[-1]
    peak_rss = max(s[2] for s in steady)
    growth = (peak_rss - warm[2]) / warm[2]
    fds_warm, fds_end = min(s[3] for s in steady[:10]), min(s[3] for s in steady[-10:])
    mib = 1 / 2**20
    trajectory = {}
    for _, it, rss, fds in samples:
        trajectory.setdefault(it // 100 * 100, (round(rss * mib, 1), fds))
    print(f"RSS MiB, fds at the first sample of each 100 iterations: {trajectory}")
    report = (f"soak {ITERATIONS} iterations in {wall:.1f} s ({ITERATIONS / wall:.1f} it/s incl. start-up); "
              f"RSS at iteration {warm[1]}: {warm[2] * mib:.1f} MiB, at iteration {end[1]}: "
              f"{end[2] * mib:.1f} MiB, steady-state peak {peak_rss * mib:.1f} MiB (+{growth:.2%}); "
              f"open fds after warm-up {fds_warm}, at the end {fds_end}, max {max(s[3] for s in steady)}; "
              f"{len(samples)} samples, {len(steady)} after warm-up")
    print(report)
    assert growth < MAX_RSS_GROWTH, report
    assert fds_end <= fds_warm, report
