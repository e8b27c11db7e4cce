"""The training loader: labeled and unlabeled batches side by side, forever, resumable.

``next(loader)`` gives ``(labeled_batch, unlabeled_batch_or_None)``. The labeled stream is
an epoch-wise seeded permutation of ``splits/labeled.txt`` (every labeled image once per
epoch, batches run across epoch boundaries); the unlabeled stream is the same over
``splits/unlabeled.txt``. Batch ``k`` is a pure function of (seed, rank, world size, k), so
``state_dict()`` only stores how many batches were consumed, and the number of workers never
changes what comes out.
"""
from __future__ import annotations

import random
import warnings
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from decseg.config import DataConfig
from decseg.data.datasets import TrainViews, collate_eval, collate_views
from decseg.data.layout import DatasetLayout
from decseg.data.sampler import ShuffledStream
from decseg.errors import DataError

LABELED, UNLABELED = 0, 1


class _BatchKeys(Sampler):
    """Endless batches of ``(stream, index, position)`` keys, starting at the owner's position."""

    def __init__(self, owner: "TwoStreamLoader"):
        self.owner = owner

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        k = self.owner.batches  # read when the DataLoader iterator is (re)created
        while True:
            yield self.owner.batch_keys(k)
            k += 1


def _worker_init(worker_id: int) -> None:
    # Sample randomness comes from per-sample generators; this only pins anything else a
    # library might draw inside a worker.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _worker_message(text: str) -> str:
    """The original message of a DataError re-raised from a worker (without its traceback)."""
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    return last.split("DataError: ", 1)[-1]


def eval_batches(dataset, batch_size: int, num_workers: int = 0, pin_memory: bool = False):
    """Collated batches of an EvalDataset, in order; a DataError from a worker keeps only its message.

    The loader draws its worker seed from a private generator, so iterating leaves the global
    RNG (and with it a training run's random stream) untouched.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_eval, pin_memory=pin_memory, generator=torch.Generator())
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except DataError as e:  # torch re-raises worker errors with the worker's traceback as text
            raise DataError(_worker_message(str(e))) from None
        yield batch


class TwoStreamLoader:
    """Iterator of ``(labeled_batch, unlabeled_batch_or_None)``; see the module docstring.

    A labeled batch has ``image``, ``image_half``, ``image_p``, ``image_half_p`` (float
    BxCxHxW in [0, 1]), ``mask``, ``mask_half`` (long BxHxW, 0/1) and ``id`` (list of str).
    An unlabeled batch has the four image views and ``id`` but no masks: unlabeled masks
    are never read. ``batch_labeled`` / ``batch_unlabeled`` are per rank.
    """

    def __init__(self, layout: DatasetLayout, data_cfg: DataConfig, batch_labeled: int,
                 batch_unlabeled: int, seed: int, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, semi: bool = True):
        if batch_labeled < 1:
            raise DataError(f"train.batch_labeled={batch_labeled} must be >= 1")
        if not layout.labeled_ids:
            raise DataError(f"{layout.splits_dir / 'labeled.txt'}: no labeled images; "
                            f"prepare the data with --labeled > 0")
        if semi and batch_unlabeled < 1:
            raise DataError(f"train.batch_unlabeled={batch_unlabeled} must be >= 1 for semi-supervised "
                            f"training (or set train.semi=false)")
        if semi and not layout.unlabeled_ids:
            raise DataError(f"{layout.splits_dir / 'unlabeled.txt'}: no unlabeled images for "
                            f"semi-supervised training; set train.semi=false or prepare with --labeled < 1")
        self.layout, self.cfg, self.seed = layout, data_cfg, int(seed)
        self.batch_labeled = batch_labeled
        self.batch_unlabeled = batch_unlabeled if semi else 0
        self.semi = semi
        self.rank, self.world_size = rank, world_size
        labeled = [layout.train_item(i) for i in sorted(layout.labeled_ids)]
        unlabeled = [layout.train_item(i) for i in sorted(layout.unlabeled_ids)] if semi else []
        self.streams = [ShuffledStream(len(labeled), self.seed, LABELED, rank, world_size)]
        if semi:
            self.streams.append(ShuffledStream(len(unlabeled), self.seed, UNLABELED, rank, world_size))
        self.dataset = TrainViews([labeled, unlabeled], data_cfg, self.seed)
        self.batches = 0  # batches handed out so far
        self._loader = DataLoader(
            self.dataset, batch_sampler=_BatchKeys(self), collate_fn=self._collate,
            num_workers=num_workers, persistent_workers=num_workers > 0,
            worker_init_fn=_worker_init if num_workers > 0 else None,
            generator=torch.Generator().manual_seed(self.seed),
        )
        self._iter: Iterator | None = None

    # -- keys -----------------------------------------------------------------
    def batch_keys(self, k: int) -> list[tuple[int, int, int]]:
        """The ``(stream, index, position)`` keys of batch ``k`` (labeled first)."""
        keys = [(LABELED, i, p) for i, p in self.streams[0].take(k * self.batch_labeled, self.batch_labeled)]
        if self.semi:
            keys += [(UNLABELED, i, p)
                     for i, p in self.streams[1].take(k * self.batch_unlabeled, self.batch_unlabeled)]
        return keys

    @staticmethod
    def _collate(samples: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        lab = [s for s in samples if s["stream"] == LABELED]
        unl = [s for s in samples if s["stream"] == UNLABELED]
        return collate_views(lab), (collate_views(unl) if unl else None)

    # -- iteration ------------------------------------------------------------
    def __iter__(self) -> "TwoStreamLoader":
        return self

    def __next__(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if self._iter is None:
            self._iter = iter(self._loader)
        try:
            batch = next(self._iter)
        except DataError as e:
            raise DataError(_worker_message(str(e))) from None
        self.batches += 1
        return batch

    @property
    def epoch(self) -> float:
        """Labeled epochs completed (fractional)."""
        return self.batches * self.batch_labeled / self.streams[0].per_rank

    # -- resume -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "seed": self.seed, "world_size": self.world_size,
                "rank": self.rank, "batch_labeled": self.batch_labeled,
                "batch_unlabeled": self.batch_unlabeled,
                "n_labeled": self.streams[0].n,
                "n_unlabeled": self.streams[1].n if self.semi else 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = self.state_dict()
        for key in ("n_labeled", "n_unlabeled"):
            if state.get(key, mine[key]) != mine[key]:
                raise DataError(f"cannot resume: the checkpoint's loader saw {state[key]} {key[2:]} images, "
                                f"this dataset has {mine[key]}; resume with the same dataset and splits")
        for key in ("seed", "world_size", "batch_labeled", "batch_unlabeled"):
            if state.get(key, mine[key]) != mine[key]:
                warnings.warn(f"resuming with {key}={mine[key]} (checkpoint: {state[key]}): the batch "
                              f"sequence will differ from an uninterrupted run", stacklevel=2)
        self.batches = int(state["batches"])
        self._iter = None  # the next batch is built from the restored position

    def close(self) -> None:
        """Stop worker processes (also happens when the loader is garbage-collected)."""
        self._iter = None
        self._loader = None  # type: ignore[assignment]
