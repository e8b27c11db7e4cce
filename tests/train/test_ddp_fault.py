"""DDP faults: a rank that dies or hangs ends the whole torchrun run quickly, and --resume continues.

Two CPU processes (gloo) train the tiny network under torchrun.

- SIGKILL of rank 1 once training runs: gloo fails the survivor's next collective at once (the
  dead process's connections are closed), torchrun's agent stops what is left and reports the
  killed rank; every process is gone well within 60 s. ``torchrun ... --resume`` with the same
  two processes then completes the run (from every rank's saved loader and RNG state).
- SIGSTOP of rank 0 (a hung rank: alive, connections open): only the collective timeout notices
  it. With ``DECSEG_DDP_TIMEOUT=10`` the survivor gives up after 10 s (gloo's default would be
  30 minutes), and torchrun's agent then stops the hung process: SIGTERM, which a stopped
  process leaves pending, then SIGKILL after 30 s (the grace period torchrun's agent uses when
  a worker failed; ``--shutdown-timeout`` does not shorten that path in torch 2.14), so the last
  process is gone about 42 s after the stop.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
import torch

from decseg.errors import ConfigError
from decseg.inference.checkpoint import load_checkpoint
from decseg.train import distributed as D

ITERATIONS = 12
EXTRA = [f"train.iterations={ITERATIONS}", "train.val_every=2", "model.sc=false", "model.dcf=false",
         "train.spc=false", "train.cc=false"]
EXIT_LIMIT_S = 60.0


def _torchrun(data: Path, run: Path, sets: list[str], resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "decseg", "train", "--data", str(data), "--out", str(run)]
    if sets:
        cmd += ["--set", *sets]
    return cmd + (["--resume"] if resume else [])


def _progress(output: Path) -> int:
    found = re.findall(r"^iter (\d+)/\d+ ", output.read_text(errors="replace"), re.M)
    return max(map(int, found), default=0)


def _workers(agent: psutil.Process, n: int = 2, timeout: float = 30.0) -> dict[int, psutil.Process]:
    """torchrun's worker processes by RANK (from their environment)."""
    end = time.time() + timeout
    while time.time() < end:
        found = {}
        for child in agent.children(recursive=True):
            try:
                rank = child.environ().get("RANK")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if rank is not None:
                found[int(rank)] = child
        if len(found) == n:
            return found
        time.sleep(0.1)
    pytest.fail(f"torchrun did not start {n} workers")


def _gone(p: psutil.Process) -> bool:
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _fault(cmd, env, output: Path, victim: int, sig: signal.Signals, after_iter: int = 3):
    """Start torchrun, send ``sig`` to rank ``victim`` once the log shows ``after_iter``.

    Returns (torchrun's return code, its output, {name: seconds from the signal to its exit}).
    """
    with open(output, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    agent = psutil.Process(proc.pid)
    procs = {}
    try:
        workers = _workers(agent)
        end = time.time() + 120
        while _progress(output) < after_iter:
            if proc.poll() is not None or time.time() > end:
                pytest.fail(f"training did not reach iteration {after_iter}:\n{output.read_text()[-3000:]}")
            time.sleep(0.05)
        procs = {"torchrun": agent, **{f"rank{r}": w for r, w in workers.items()}}
        t0 = time.time()
        workers[victim].send_signal(sig)
        exits: dict[str, float] = {}
        while len(exits) < len(procs) and time.time() - t0 < EXIT_LIMIT_S + 30:
            for name, p in procs.items():
                if name not in exits and (_gone(p) if name != "torchrun" else proc.poll() is not None):
                    exits[name] = round(time.time() - t0, 2)
            time.sleep(0.05)
        return proc.wait(timeout=30), output.read_text(errors="replace"), exits
    finally:
        for p in [*procs.values()][::-1]:  # only what this test started: workers, then the agent
            if not _gone(p):
                p.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _loss_iters(run: Path) -> list[int]:
    return [r["iter"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.mark.slow
def test_sigkill_of_one_rank_stops_every_process_then_resume_completes(tiny_data, tiny_overrides,
                                                                     subprocess_env, tmp_path):
    sets = tiny_overrides + EXTRA
    run = tmp_path / "killed"
    rc, out, exits = _fault(_torchrun(tiny_data, run, sets), subprocess_env, tmp_path / "out1.txt",
                            victim=1, sig=signal.SIGKILL)
    print(f"SIGKILL rank 1: seconds from the kill to each exit {exits}; torchrun rc {rc}")
    assert set(exits) == {"torchrun", "rank0", "rank1"}, f"still running after {EXIT_LIMIT_S + 30:.0f} s: {exits}"
    assert max(exits.values()) < EXIT_LIMIT_S, exits
    assert rc != 0
    # torchrun's agent names the failed rank and the signal
    assert re.search(r"rank\s*: 1 \(local_rank: 1\)\s*\n\s*exitcode\s*: -9", out), out[-3000:]
    assert "Signal 9 (SIGKILL)" in out
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["iteration"]
    assert saved >= 2

    r = subprocess.run(_torchrun(tiny_data, run, [], resume=True), env=subprocess_env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"at iteration {saved}" in r.stderr
    got = load_checkpoint(run / "checkpoints" / "last.pt")
    assert got["iteration"] == ITERATIONS and len(got["resume"]["ranks"]) == 2
    assert _loss_iters(run) == list(range(1, ITERATIONS + 1))


@pytest.mark.slow
def test_a_hung_rank_times_out_instead_of_blocking_for_30_minutes(tiny_data, tiny_overrides,
                                                                 subprocess_env, tmp_path):
    env = {**subprocess_env, D.TIMEOUT_ENV: "10"}
    sets = tiny_overrides + [o for o in EXTRA if not o.startswith("train.iterations")] + ["train.iterations=100"]
    rc, out, exits = _fault(_torchrun(tiny_data, tmp_path / "hung", sets), env,
                            tmp_path / "out2.txt", victim=0, sig=signal.SIGSTOP)
    print(f"SIGSTOP rank 0, {D.TIMEOUT_ENV}=10: seconds from the stop to each exit {exits}; torchrun rc {rc}")
    assert set(exits) == {"torchrun", "rank0", "rank1"}, f"still running after {EXIT_LIMIT_S + 30:.0f} s: {exits}"
    assert exits["rank1"] < 10 + 15, exits  # the survivor gives up after the timeout
    assert max(exits.values()) < EXIT_LIMIT_S, exits  # then torchrun stops the hung rank
    assert rc != 0
    # gloo words the timeout by where the survivor was waiting: a receive, or a closed pair.
    assert re.search(r"Timed out waiting 10000ms|Application timeout caused pair closure", out), out[-3000:]


def test_collective_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(D.TIMEOUT_ENV, raising=False)
    assert D.collective_timeout() == timedelta(seconds=D.DEFAULT_TIMEOUT_S) == timedelta(minutes=10)
    monkeypatch.setenv(D.TIMEOUT_ENV, "45")
    assert D.collective_timeout() == timedelta(seconds=45)
    for bad in ("soon", "0", "-5", "inf", "nan"):
        monkeypatch.setenv(D.TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError, match=D.TIMEOUT_ENV):
            D.collective_timeout()


def test_a_failed_collective_becomes_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(D.TIMEOUT_ENV, "30")
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                                         world_size=1, timeout=D.collective_timeout())
    try:
        with pytest.raises(D.CollectiveError) as info:
            with D.collective_errors("waiting for the other ranks (barrier)"):
                raise RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer\nmore")
        msg = str(info.value)
        assert msg.startswith("rank 0: waiting for the other ranks (barrier) failed")
        assert "Connection closed by peer" in msg and "more" not in msg
        assert "--resume" in msg and f"{D.TIMEOUT_ENV}=30 s" in msg
        with pytest.raises(ValueError):  # other errors pass through unchanged
            with D.collective_errors("x"):
                raise ValueError("not a collective")
    finally:
        torch.distributed.destroy_process_group()
    with pytest.raises(RuntimeError, match="no group"):  # without a process group: unchanged
        with D.collective_errors("x"):
            raise RuntimeError("no group")
