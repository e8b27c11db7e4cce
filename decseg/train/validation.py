"""Validation Dice: the evaluator's meanDic of the binary prediction, over the val split.

Each image is predicted at S (``net.predict_logits``, as ``decseg predict`` does), argmax'd,
resized back to its original size with nearest neighbour, and scored with
``decseg.metrics.binary_mean_dice``; the result is the mean over images. Test sets are never used.

With K > 2 classes the label maps are compared per foreground class, pooled over the split
(``2 * sum |P_c & G_c| / sum (|P_c| + |G_c|)`` over all val pixels), and val_dice is the mean over
the foreground classes. Pooling, not a mean over images: most slices of a volume lack some
classes, and a per-image Dice of an absent class (0/0) would reward or punish nothing.
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
    from decseg.inference.maps import labels_at_original_size, maps_at_original_size
    from decseg.metrics import binary_mean_dice

    dataset = EvalDataset(layout, "val", cfg.data)
    classes = cfg.data.classes
    scores = []
    confusion = np.zeros((classes, classes), dtype=np.int64)  # [ground truth, prediction], K > 2
    for batch in eval_batches(dataset, batch_size or cfg.predict.batch_size):
        x = batch["image"].to(device).contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = net.predict_logits(x)
        probs = torch.softmax(logits.float(), 1)
        if classes > 2:
            for pred, gt in zip(labels_at_original_size(probs, batch["orig_size"]), batch["mask"]):
                pair = np.asarray(gt, dtype=np.int64).ravel() * classes + pred.ravel()
                confusion += np.bincount(pair, minlength=classes * classes).reshape(classes, classes)
            continue
        maps = maps_at_original_size(probs, batch["orig_size"])
        for pred, gt in zip(maps, batch["mask"]):
            scores.append(binary_mean_dice(pred > 0, np.asarray(gt, dtype=bool)))
    if classes > 2:
        return foreground_dice(confusion)
    return float(np.mean(scores))


def foreground_dice(confusion: np.ndarray) -> float:
    """Mean Dice over the foreground classes 1..K-1 of a [ground truth, prediction] pixel count
    matrix; a class neither present nor predicted anywhere is left out (1.0 if all are)."""
    tp = np.diag(confusion)[1:].astype(np.float64)
    sizes = (confusion.sum(0) + confusion.sum(1))[1:].astype(np.float64)
    seen = sizes > 0
    return float(np.mean(2 * tp[seen] / sizes[seen])) if seen.any() else 1.0
