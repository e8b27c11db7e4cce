"""Datasets: the on-disk layout, image reading, preparation, synthetic data and loaders.

The torch-free parts (layout, imageio, splits, prepare, synthetic) import without torch;
the loaders are imported on first use.
"""
from __future__ import annotations

from decseg.data.imageio import read_image, read_mask
from decseg.data.layout import DatasetLayout, Item

_LAZY = {
    "TwoStreamLoader": "decseg.data.loader",
    "eval_batches": "decseg.data.loader",
    "EvalDataset": "decseg.data.datasets",
    "collate_eval": "decseg.data.datasets",
    "list_images": "decseg.data.datasets",
    "generate_dataset": "decseg.data.synthetic",
    "prepare_dataset": "decseg.data.prepare",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'decseg.data' has no attribute {name!r}")


__all__ = ["DatasetLayout", "Item", "read_image", "read_mask", *_LAZY]
