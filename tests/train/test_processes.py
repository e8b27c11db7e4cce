"""Real processes: SIGTERM saves and exits cleanly, SIGKILL then --resume finishes, torchrun DDP."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from decseg.inference.checkpoint import load_checkpoint


def _cmd(data, run, tiny, extra):
    sets = [a for o in tiny + extra for a in ("--set", o)]
    return ["-m", "decseg", "train", "--data", str(data), "--out", str(run), *sets]


def _wait_for(predicate, proc, timeout=120.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training exited early ({proc.returncode}): {err[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail("timed out waiting for the training process")


def _log_iters(run):
    path = run / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(x)["iter"] for x in path.read_text().splitlines() if '"loss"' in x]


def test_sigterm_finishes_the_step_and_saves(tiny_data, tiny_overrides, subprocess_env, tmp_path):
    run = tmp_path / "term"
    proc = subprocess.Popen([sys.executable, *_cmd(tiny_data, run, tiny_overrides,
                                                   ["train.iterations=500", "train.val_every=500",
                                                    "model.sc=false", "model.dcf=false"])],
                            env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: len(_log_iters(run)) >= 1, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM" in err and "--resume" in err
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["iteration"] >= 1 and last["iteration"] == _log_iters(run)[-1]
    assert not list((run / "checkpoints").glob(".*.tmp"))  # no temp files left


def test_sigkill_mid_run_then_resume_finishes(tiny_data, tiny_overrides, subprocess_env, tmp_path):
    run = tmp_path / "kill"
    extra = ["train.iterations=5", "train.val_every=2", "model.sc=false", "model.dcf=false"]
    proc = subprocess.Popen([sys.executable, *_cmd(tiny_data, run, tiny_overrides, extra)],
                            env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last_pt = run / "checkpoints" / "last.pt"
    _wait_for(lambda: last_pt.is_file(), proc)
    proc.kill()  # SIGKILL: no handler runs
    proc.communicate(timeout=60)
    saved = load_checkpoint(last_pt)  # intact, whatever moment the kill hit
    assert saved["iteration"] in (2, 4)
    r = subprocess.run([sys.executable, *_cmd(tiny_data, run, [], []), "--resume"],
                       env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resumed from {last_pt} at iteration {saved['iteration']}" in r.stderr
    assert load_checkpoint(last_pt)["iteration"] == 5
    assert _log_iters(run) == [1, 2, 3, 4, 5]  # records after the checkpoint were rewritten once


def test_torchrun_two_processes_agree(tiny_data, tiny_overrides, subprocess_env, tmp_path):
    from decseg.accel import block_cache as cpu_cache

    run = tmp_path / "ddp"
    # the block cache then allocates gloo's buffers too (where a compiler can build it)
    memory = "cache" if cpu_cache.available()[0] else "auto"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).with_name("ddp_weights_digest.py")), str(tiny_data), str(run),
           *tiny_overrides, "train.iterations=2", "train.val_every=2", f"train.cpu_memory={memory}"]
    r = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"cpu memory {memory if memory == 'cache' else 'reuse'}" in r.stdout + r.stderr
    d0 = json.loads((run / "digest" / "rank0.json").read_text())
    d1 = json.loads((run / "digest" / "rank1.json").read_text())
    assert d0["world_size"] == d1["world_size"] == 2 and d0["iteration"] == d1["iteration"] == 2
    assert d0["sha256"] == d1["sha256"]  # gradients were averaged: identical weights
    assert _log_iters(run) == [1, 2]  # rank 0 alone writes the log
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert len(last["resume"]["ranks"]) == 2  # each rank's loader/RNG state, for an exact resume
    # per-rank random streams (seed + rank) were saved separately
    l0, l1 = (last["resume"]["ranks"][i]["rng"]["torch"] for i in (0, 1))
    assert not torch.equal(l0, l1)
