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

# Small, fast settings: a tiny timm test encoder, 64 px, batch 2+2, fp32, no workers.
TINY_OVERRIDES = ["model.encoder=test_resnet", "model.pretrained=false", "data.size=64",
               "train.batch_labeled=2", "train.batch_unlabeled=2", "train.amp=off",
               "train.channels_last=false", "train.device=cpu", "data.num_workers=0",
               "train.log_every=1", "train.image_every=0"]


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    return list(TINY_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A synthetic dataset at 64 px: 4 labeled + 6 unlabeled training images, 2 val images."""
    from decseg.data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("tiny") / "data", n=10, size=64, seed=3,
                            labeled=4, n_val=2, n_test=0)


@pytest.fixture(scope="session")
def tiny_data_noval(tmp_path_factory):
    from decseg.data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("tiny") / "noval", n=6, size=64, seed=4,
                            labeled=3, n_val=0, n_test=0)


@pytest.fixture
def subprocess_env():
    """Environment for subprocesses (one thread each, no GPU)."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return env
