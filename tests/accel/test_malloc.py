"""The malloc modes of train.cpu_memory change what re-allocating a freed block costs.

Each case runs in a fresh interpreter: mallopt settings are process-wide and one-way.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from decseg.accel.malloc import configure_malloc

PROBE = r"""
import json, resource, sys
import torch
from decseg.accel.malloc import configure_malloc
applied = all([configure_malloc(m) for m in sys.argv[1].split(",")])  # in order
n = 16 << 20  # 64 MiB of float32: above glibc's largest sliding mmap threshold
for _ in range(8):  # like training steps: the same tensors allocated and freed again
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x, y = torch.ones(n), torch.ones(n // 5)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    total = float(x.sum())
    del x, y
print(json.dumps({"applied": applied, "faults": faults, "sum": total}))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_reuse_mode_refills_a_freed_block_without_page_faults():
    reuse, system = _probe("reuse"), _probe("system")
    if not reuse["applied"]:
        pytest.skip("not glibc: mallopt is unavailable")
    assert reuse["sum"] == system["sum"] == float(16 << 20)
    # 64 MiB is 16384 small pages or 32 huge ones: a fresh mapping faults at least 32 times
    assert system["faults"] >= 32
    # by the last round the freed blocks come back (< 1% of the small pages faulted)
    assert reuse["faults"] < 164, reuse


@pytest.mark.parametrize("modes", ["return", "reuse,return"])
def test_return_mode_unmaps_freed_blocks(modes):
    ret = _probe(modes)
    if not ret["applied"]:
        pytest.skip("not glibc: mallopt is unavailable")
    assert ret["faults"] >= 32  # given back when freed, faulted in again (also after reuse)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="reuse"):
        configure_malloc("hoard")
