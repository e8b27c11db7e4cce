"""Validation Dice: the evaluator's meanDic of the binary prediction, over the val split.

Each image is predicted at S (``net.predict_logits``, as ``decseg predict`` does), argmax'd,
resized back to its original size with nearest neighbour, and scored with
``decseg.metrics.binary_mean_dice``; the result is the mean over images. Test sets are never used.
"""
from __future__ import annotations

import numpy as np
import torch

from decseg.config import Config


def has_val_split(layout) -> bool:
    return layout.has_split("val")


@torch.no_grad()
def validate(net: torch.nn.Module, layout, cfg: Config, device: torch.device,
             amp_dtype: torch.dtype | None = None, batch_size: int | None = None,
             memory_format: torch.memory_format = torch.contiguous_format) -> float:
    """Mean val Dice of ``net`` (put in eval mode by the caller)."""
    from decseg.data import EvalDataset, eval_batches
    from decseg.inference.maps import maps_at_original_size
    from decseg.metrics import binary_mean_dice

    dataset = EvalDataset(layout, "val", cfg.data)
    scores = []
    for batch in eval_batches(dataset, batch_size or cfg.predict.batch_size):
        x = batch["image"].to(device).contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = net.predict_logits(x)
        maps = maps_at_original_size(torch.softmax(logits.float(), 1), batch["orig_size"])
        for pred, gt in zip(maps, batch["mask"]):
            scores.append(binary_mean_dice(pred > 0, np.asarray(gt, dtype=bool)))
    return float(np.mean(scores))
