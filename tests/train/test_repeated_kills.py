"""SIGKILL five times at random moments, --resume after each: the weights match an unbroken run.

A tiny CPU run (12 iterations, last.pt every 2) is killed with SIGKILL once its progress output
(one plain ``iter N/12`` line per iteration on stderr, which is a file here) shows a chosen
iteration; the kill then lands somewhere inside the next step, a validation or a checkpoint
write. After each kill the run continues with ``--resume``. At the end its ``last.pt`` must hold
exactly (``torch.equal``) the weights, generators and optimizer state of an uninterrupted run,
and the log the same losses, in fp32 and in bf16.

The five kill iterations come from a seed: a new one each run (so the suite explores other
points over time), printed with the points; ``DECSEG_KILL_SEED=N`` repeats a run's choice.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from decseg.inference.checkpoint import load_checkpoint

ITERATIONS = 12
VAL_EVERY = 2
KILLS = 5
# The tiniest network that still runs every term of the objective: no half-scale decoder and no
# DCF, but the perturbed pass (colour jitter from the RNG) and the generators (L_cc) stay on.
EXTRA = [f"train.iterations={ITERATIONS}", f"train.val_every={VAL_EVERY}", "model.sc=false",
         "model.dcf=false"]
PROGRESS = re.compile(r"^iter (\d+)/%d " % ITERATIONS, re.M)


def kill_points(seed: int) -> tuple[list[int], list[float]]:
    """``KILLS`` distinct iterations in 1 .. ITERATIONS - 2, ascending, and a delay for each.

    The kill is sent that many seconds (0 - 0.5 s; a step takes about 0.3 s here) after the
    progress line of the iteration appears, or at once when the next line appears first, so it
    lands in a step, a validation or a checkpoint write, and always before the last iteration.
    """
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, ITERATIONS - 1), KILLS))
    return points, [round(rng.uniform(0.0, 0.5), 3) for _ in points]


def _train_cmd(data: Path, run: Path, sets: list[str], resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "decseg", "train", "--data", str(data), "--out", str(run)]
    if sets:
        cmd += ["--set", *sets]
    return cmd + (["--resume"] if resume else [])


def _last_progress(stderr_file: Path) -> int:
    found = PROGRESS.findall(stderr_file.read_text(errors="replace")) if stderr_file.is_file() else []
    return max(map(int, found), default=0)


def _run_and_kill_at(cmd, env, stderr_file: Path, at: int, delay: float,
                     timeout: float = 120.0) -> tuple[int, int]:
    """Start ``cmd``; SIGKILL it ``delay`` s after its progress shows iteration >= ``at``.

    Returns (the process's return code, the last iteration its progress showed).
    """
    with open(stderr_file, "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        end = time.time() + timeout
        try:
            while proc.poll() is None and _last_progress(stderr_file) < at:
                if time.time() > end:
                    pytest.fail(f"no progress to iteration {at} within {timeout:.0f} s:\n"
                                + stderr_file.read_text()[-2000:])
                time.sleep(0.02)
            fire = time.time() + delay
            while proc.poll() is None and time.time() < fire and _last_progress(stderr_file) <= at:
                time.sleep(0.01)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode, _last_progress(stderr_file)


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]


def _assert_same_state(a: dict, b: dict, where: str) -> None:
    """Tensors equal bit for bit (torch.equal), other values equal, through nested containers."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for k in a:
            _assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_five_sigkills_then_resume_match_an_uninterrupted_run(amp, tiny_data, tiny_overrides,
                                                              subprocess_env, tmp_path):
    seed = int(os.environ.get("DECSEG_KILL_SEED", random.SystemRandom().randrange(2**31)))
    points, delays = kill_points(seed)
    print(f"amp={amp}: kill seed {seed} (DECSEG_KILL_SEED={seed} repeats it), kill points {points}, "
          f"delays {delays} s")
    sets = tiny_overrides + EXTRA + [f"train.amp={amp}"]

    ref = tmp_path / "reference"
    r = subprocess.run(_train_cmd(tiny_data, ref, sets, resume=False), env=subprocess_env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]

    run = tmp_path / "killed"
    history = []
    for n, (at, delay) in enumerate(zip(points, delays)):
        # the first start is a fresh run; later ones resume with the stored config
        cmd = _train_cmd(tiny_data, run, [] if n else sets, resume=n > 0)
        rc, reached = _run_and_kill_at(cmd, subprocess_env, tmp_path / f"stderr{n}.txt", at, delay)
        last = run / "checkpoints" / "last.pt"
        saved = load_checkpoint(last)["iteration"] if last.is_file() else None  # intact after any kill
        history.append({"kill_at": at, "progress": reached, "rc": rc, "last.pt": saved})
        assert rc == -signal.SIGKILL, f"seed {seed}: start {n} ended with {rc} before the kill: {history}"
    print(f"amp={amp}: kills (kill_at: the progress line waited for; progress: the last line before "
          f"the kill; last.pt: its iteration after the kill): {history}")

    r = subprocess.run(_train_cmd(tiny_data, run, [], resume=True), env=subprocess_env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"seed {seed}: {r.stderr[-3000:]}"

    got, want = load_checkpoint(run / "checkpoints" / "last.pt"), load_checkpoint(ref / "checkpoints" / "last.pt")
    assert got["iteration"] == want["iteration"] == ITERATIONS
    assert got["model"].keys() == want["model"].keys()
    differ = [k for k in want["model"] if not torch.equal(got["model"][k], want["model"][k])]
    assert not differ, f"seed {seed}, points {points}, amp={amp}: weights differ in {differ[:5]} ({history})"
    # generators, momentum buffers, grad scaler: the whole resume state but the RNG/loader positions
    for key in ("method", "optimizer", "scaler"):
        _assert_same_state(got["resume"][key], want["resume"][key], f"seed {seed} resume.{key}")
    _assert_same_state(got["resume"]["ranks"], want["resume"]["ranks"], f"seed {seed} resume.ranks")
    assert got["best_val_dice"] == want["best_val_dice"]
    # every logged loss and validation Dice, once each, as in the unbroken run
    assert _records(run) == _records(ref), f"seed {seed}: logs differ"
    leftovers = sorted(f.name for f in (run / "checkpoints").glob(".*.tmp"))
    print(f"amp={amp}: temp files left by kills during a checkpoint write: {leftovers or 'none'}")
