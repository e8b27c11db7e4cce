"""Suite-wide settings.

The tests use tiny networks (64 px); on a 2-core machine OpenMP worker threads mostly spin on
such work (measured: 0.08 s vs 1-16 s CPU per tiny forward/backward), so every test and every
subprocess a test starts (decseg CLI, torchrun) runs on one intra-op thread.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
