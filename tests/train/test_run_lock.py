"""One writer per run folder: RUN/.lock refuses a second decseg train and outlives no holder."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from decseg.train.run_lock import LOCK_NAME, RunLock, RunLocked

sys.path.insert(0, str(Path(__file__).parent))
from test_processes import _cmd, _log_iters, _wait_for  # noqa: E402


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _start(data, run, overrides, env) -> subprocess.Popen:
    """A ``decseg train`` process (the small network: no decoder B, no DCF)."""
    return subprocess.Popen([sys.executable, *_cmd(data, run, overrides, ["model.sc=false", "model.dcf=false"])],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_second_holder_is_refused_and_release_removes_the_file(tmp_path):
    run = tmp_path / "run"
    with RunLock.acquire(run) as lock:
        record = json.loads((run / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid() and record["host"] and record["started"]
        with pytest.raises(RunLocked, match=f"pid {os.getpid()} on host .*wait until that run ends, or "
                                            f"choose another --out"):
            RunLock.acquire(run)
        assert lock.held
    assert not run.exists()  # it created the folder and nothing else was written there
    run.mkdir()
    (run / "config.yaml").write_text("x")
    RunLock.acquire(run).release()
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_lock_file_of_a_dead_process_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    dead = _dead_pid()
    (run / LOCK_NAME).write_text(json.dumps({"host": "h", "pid": dead, "started": "then"}))
    lock = RunLock.acquire(run)  # nobody holds the flock: the file is stale
    assert f"taking over the lock left by pid {dead}" in capsys.readouterr().err
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_without_flock_the_pid_is_checked(tmp_path, monkeypatch, capsys):
    import fcntl
    import socket

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    run = tmp_path / "run"
    lock = RunLock.acquire(run)  # a fresh folder: the file it creates is its own
    assert "does not support file locks" in capsys.readouterr().err
    with pytest.raises(RunLocked, match=f"pid {os.getpid()} .*no file locks"):
        RunLock.acquire(run)  # the holder (this process) is alive
    lock.release()
    assert not run.exists()
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "started": "then"}))
    lock = RunLock.acquire(run)
    assert "taking over" in capsys.readouterr().err
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (run / LOCK_NAME).exists()


def test_second_train_into_a_running_folder_is_refused(tiny_data, tiny_overrides, subprocess_env, tmp_path):
    run = tmp_path / "run"
    first = _start(tiny_data, run, tiny_overrides + ["train.iterations=500", "train.val_every=500"],
                   subprocess_env)
    try:
        _wait_for(lambda: len(_log_iters(run)) >= 1, first)
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == first.pid
        for extra in ([], ["--resume"]):  # a new run, and a resume of the same folder
            second = subprocess.run([sys.executable, *_cmd(tiny_data, run, tiny_overrides, ["train.seed=7"]),
                                     *extra], env=subprocess_env, capture_output=True, text=True, timeout=300)
            assert second.returncode == 2, second.stderr[-2000:]
            assert f"pid {first.pid} on host" in second.stderr and "another --out" in second.stderr
            assert "Traceback" not in second.stderr
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, err[-2000:]
    iters = _log_iters(run)
    assert iters == list(range(1, len(iters) + 1))  # one run's records, none repeated or interleaved
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] != 7
    assert not (run / LOCK_NAME).exists()  # released on the signal's exit path


def test_lock_left_by_sigkill_is_taken_over_on_resume(tiny_data, tiny_overrides, subprocess_env, tmp_path):
    run = tmp_path / "run"
    proc = _start(tiny_data, run, tiny_overrides + ["train.iterations=5", "train.val_every=2"], subprocess_env)
    _wait_for(lambda: (run / "checkpoints" / "last.pt").is_file(), proc)
    proc.kill()  # SIGKILL: no handler runs, the file stays; the kernel drops the flock
    proc.communicate(timeout=60)
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == proc.pid
    r = subprocess.run([sys.executable, *_cmd(tiny_data, run, [], []), "--resume"],
                       env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"taking over the lock left by pid {proc.pid}" in r.stderr
    assert _log_iters(run) == [1, 2, 3, 4, 5]
    assert not (run / LOCK_NAME).exists()
