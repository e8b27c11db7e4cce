"""Losses over a subset of pixels: pseudo-labels above a confidence, or one region of a mixed image
(FixMatch, UniMatch, BCP).

Pixels where ``keep`` is False contribute nothing; all are computed in float32, so they stay
exact under autocast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from decseg.losses.supervised import DICE_SMOOTH


def confident_cross_entropy(logits: torch.Tensor, label: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Pixel-wise CE against ``label``, 0 where ``keep`` is False, averaged over all pixels."""
    ce = F.cross_entropy(logits.float(), label, reduction="none")
    return (ce * keep.to(ce.dtype)).mean()


def masked_dice_loss(probs: torch.Tensor, target: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Soft Dice (squared sums, batch-wise, mean over classes) over the pixels where ``keep``.

    ``probs``: (N, K, H, W); ``target``: (N, H, W) class indices; ``keep``: (N, H, W) bool or
    a [0, 1] weight. 0 when no pixel is kept.
    """
    probs = probs.float()
    onehot = F.one_hot(target.long(), probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    k = keep.to(probs.dtype).unsqueeze(1)
    dims = (0, 2, 3)
    intersect = (probs * onehot * k).sum(dims)
    denom = (probs * probs * k).sum(dims) + (onehot * onehot * k).sum(dims)
    return (1.0 - (2.0 * intersect + DICE_SMOOTH) / (denom + DICE_SMOOTH)).mean()


def masked_ce_dice_loss(logits: torch.Tensor, target: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``(CE + Dice) / 2`` of ``logits`` against ``target`` over the pixels where ``keep``."""
    logits = logits.float()
    k = keep.to(logits.dtype)
    ce = (F.cross_entropy(logits, target, reduction="none") * k).sum() / (k.sum() + 1e-16)
    return 0.5 * (ce + masked_dice_loss(torch.softmax(logits, 1), target, keep))
