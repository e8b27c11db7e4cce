"""decseg's CPU block cache (train.cpu_memory=cache): built with the system's compiler, installed
as PyTorch's CPU allocator, reusing freed blocks within the high-water mark of memory in use.

Each case runs in a fresh interpreter: the allocator, once installed, stays for the process.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from decseg.accel import block_cache as cpu_cache

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
MiB = 1 << 20


def _run(code: str, env: dict | None = None, timeout: int = 300) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def built():
    ok, why = cpu_cache.available()
    if not ok and shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip(f"no C++ compiler here: {why}")
    assert ok, why  # a compiler is here, so the build must work
    return cpu_cache.library_path()


def test_it_builds_from_scratch_into_the_build_directory(built, tmp_path):
    r = _run(r"""
import json
from decseg.accel import block_cache as cpu_cache
ok, why = cpu_cache.available()
cpu_cache.install()
print(json.dumps({"ok": ok, "why": why, "path": str(cpu_cache.library_path()),
                  "active": cpu_cache.active()}))
""", env={"DECSEG_BUILD_DIR": str(tmp_path)})
    assert r["ok"] and r["active"], r["why"]
    assert [p.name for p in tmp_path.iterdir()] == [os.path.basename(r["path"])]  # no temp left


def test_freed_blocks_come_back_without_page_faults_and_values_stay(built):
    r = _run(r"""
import json, resource
import torch
from decseg.accel import block_cache as cpu_cache
cpu_cache.install()
assert cpu_cache.active()
n = 16 << 20  # 64 MiB of float32
sums, faults = [], []
for i in range(6):  # like training steps: the same tensors allocated and freed again
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.full((n,), float(i))
    y = torch.arange(n // 5, dtype=torch.float64)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    sums.append([float(x.sum()), float(y.sum())])
    del x, y
small = torch.ones(1000)  # below 1 MiB: PyTorch's own path, not counted
c = cpu_cache.counters()
cpu_cache.empty()
print(json.dumps({"sums": sums, "faults": faults, "c": c, "after_empty": cpu_cache.counters()}))
""")
    n = 16 << 20
    for i, (sx, sy) in enumerate(r["sums"]):
        assert sx == float(i) * n  # fresh blocks and reused ones hold what was written
        assert sy == (n // 5) * (n // 5 - 1) / 2
    c = r["c"]
    assert r["faults"][0] >= 32 and r["faults"][-1] < 164, r["faults"]  # < 1% of 16384 pages
    assert c["misses"] == 2 and c["hits"] == 10, c
    assert c["live"] == 0 and c["cached"] <= c["high_water"], c
    assert r["after_empty"]["cached"] == 0
    assert r["after_empty"]["unmapped"] == c["mapped"]


def test_best_fit_splits_merges_and_keeps_within_the_high_water_mark(built):
    r = _run(r"""
import json
import torch
from decseg.accel import block_cache as cpu_cache
cpu_cache.install()
MiB = 1 << 20
def block(mib): return torch.empty(mib * MiB, dtype=torch.uint8)
a = block(8); del a                     # one free 8 MiB block
b, c = block(2), block(4)               # both carved out of it
split = cpu_cache.counters()
del b, c                                # merged back with the 2 MiB remainder
d = block(8)                            # fits only the merged block
merged = cpu_cache.counters()
del d
e = block(12)                           # no fit: maps fresh, unmaps the 8 MiB to stay bounded
bounded = cpu_cache.counters()
print(json.dumps({"split": split, "merged": merged, "bounded": bounded}))
""")
    MiB8 = 8 * MiB
    s, m, b = r["split"], r["merged"], r["bounded"]
    assert s["misses"] == 1 and s["hits"] == 2 and s["mapped"] == MiB8 and s["cached"] == 2 * MiB
    assert m["hits"] == 3 and m["mapped"] == MiB8 and m["cached"] == 0
    assert b["misses"] == 2 and b["unmapped"] == MiB8 and b["cached"] == 0
    assert b["live"] == b["high_water"] == 12 * MiB


def test_forked_data_loader_workers_allocate_with_it(built):
    r = _run(r"""
import json
import torch
from torch.utils.data import DataLoader, Dataset
from decseg.accel import block_cache as cpu_cache
cpu_cache.install()
keep = torch.ones(4 << 20); scratch = torch.ones(4 << 20); del scratch  # a free block to inherit
class Big(Dataset):
    def __len__(self): return 6
    def __getitem__(self, i):
        t = torch.full((1 << 20,), float(i))  # 4 MiB in the worker
        t2 = t * 2; del t2
        return t
loader = DataLoader(Big(), batch_size=2, num_workers=2, multiprocessing_context="fork")
sums = [float(b.sum()) for b in loader]
print(json.dumps({"sums": sums, "keep": float(keep.sum())}))
""")
    n = 1 << 20
    assert r["sums"] == [float(n * (2 * k + 2 * k + 1)) for k in range(3)]
    assert r["keep"] == float(4 << 20)


STEPS = r"""
import json, sys
import torch
from decseg import load_config
from decseg.cli.benchmarking import build_train_step
from decseg.accel import block_cache as cpu_cache
torch.set_num_threads(1)
cfg = load_config(None, ["model.encoder=resnet18", "model.pretrained=false", "data.size=96",
                         "train.batch_labeled=2", "train.batch_unlabeled=2",
                         "train.cpu_memory=" + sys.argv[1]])
bs = build_train_step(cfg, torch.device("cpu"))
losses = [{k: float(v) for k, v in bs.step().items()} for _ in range(3)]
print(json.dumps({"losses": losses, "mode": bs.settings["cpu_memory_resolved"],
                  "active": cpu_cache.active(), "c": cpu_cache.counters()}))
"""


def _steps(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_training_steps_give_the_same_losses_with_the_cache(built):
    cached, plain = _steps("cache"), _steps("system")
    assert cached["mode"] == "cache" and cached["active"]
    assert plain["mode"] == "system" and not plain["active"]
    assert cached["c"]["hits"] > cached["c"]["misses"] > 0  # steps reuse what earlier ones freed
    assert cached["c"]["live"] + cached["c"]["cached"] <= cached["c"]["high_water"]
    # only where the memory sits changes, not the arithmetic
    assert cached["losses"] == plain["losses"]


def test_without_a_compiler_auto_falls_back_and_explicit_cache_is_an_error(tmp_path):
    r = _run(r"""
import json
import torch
from decseg import load_config
from decseg.accel.plan import BIG_MODEL_PARAMS, plan_execution
from decseg.errors import ConfigError
from decseg.accel import block_cache as cpu_cache
cpu = torch.device("cpu")
ok, why = cpu_cache.available()
plan = plan_execution(load_config(None, ["train.amp=bf16"]).train, cpu)
plan.apply_memory(BIG_MODEL_PARAMS + 1)
mode, notes = plan.cpu_memory, plan.notes
try:
    plan_execution(load_config(None, ["train.cpu_memory=cache", "train.amp=off"]).train, cpu).apply_memory(10)
    err = None
except ConfigError as e:
    err = str(e)
print(json.dumps({"ok": ok, "why": why, "mode": mode, "notes": notes, "err": err,
                  "active": cpu_cache.active()}))
""", env={"CXX": str(tmp_path / "no-such-c++"), "DECSEG_BUILD_DIR": str(tmp_path / "build")})
    assert not r["ok"] and "no C++ compiler" in r["why"] and "no-such-c++" in r["why"]
    assert r["mode"] == "return" and "unavailable" in r["notes"][0] and not r["active"]
    assert "train.cpu_memory=cache" in r["err"] and "train.cpu_memory=auto" in r["err"]


def test_a_compiler_error_is_reported_with_its_message(tmp_path):
    fake = tmp_path / "fake-c++"
    fake.write_text("#!/bin/sh\necho 'fatal error: c10/core/Allocator.h: No such file' >&2\nexit 1\n")
    fake.chmod(0o755)
    r = _run(r"""
import json
from decseg.accel import block_cache as cpu_cache
ok, why = cpu_cache.available()
print(json.dumps({"ok": ok, "why": why}))
""", env={"CXX": str(fake), "DECSEG_BUILD_DIR": str(tmp_path / "build")})
    assert not r["ok"] and "exited 1" in r["why"] and "Allocator.h" in r["why"]
    assert not any(p.suffix == ".so" for p in (tmp_path / "build").glob("*"))  # nothing half-built


def test_an_unwritable_build_directory_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = _run(r"""
import json
from decseg.accel import block_cache as cpu_cache
ok, why = cpu_cache.available()
print(json.dumps({"ok": ok, "why": why}))
""", env={"DECSEG_BUILD_DIR": str(blocker / "build")})
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler: the build never gets to the directory")
    assert not r["ok"] and "DECSEG_BUILD_DIR" in r["why"] and str(blocker) in r["why"]
