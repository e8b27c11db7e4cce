"""Fixtures of the engine tests (names prefixed ``engine_``)."""
from __future__ import annotations

import os

import pytest

# Small, fast settings: a tiny timm test encoder, 64 px, batch 2+2, fp32, no workers.
ENGINE_TINY = ["model.encoder=test_resnet", "model.pretrained=false", "data.size=64",
               "train.batch_labeled=2", "train.batch_unlabeled=2", "train.amp=off",
               "train.channels_last=false", "train.device=cpu", "data.num_workers=0",
               "train.log_every=1", "train.image_every=0"]


@pytest.fixture(scope="session")
def engine_tiny() -> list[str]:
    return list(ENGINE_TINY)


@pytest.fixture(scope="session")
def engine_data(tmp_path_factory):
    """A synthetic dataset at 64 px: 4 labeled + 6 unlabeled training images, 2 val images."""
    from decseg.data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("engine") / "data", n=10, size=64, seed=3,
                            labeled=4, n_val=2, n_test=0)


@pytest.fixture(scope="session")
def engine_data_noval(tmp_path_factory):
    from decseg.data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("engine") / "noval", n=6, size=64, seed=4,
                            labeled=3, n_val=0, n_test=0)


@pytest.fixture
def engine_env():
    """Environment for subprocesses (one thread each, no GPU)."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return env
