"""L_sup: cross-entropy plus the batch-wise soft Dice on each output (docs/METHOD.md, "Objective").

All losses cast logits to float32 first, so they stay exact under bf16/fp16 autocast.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

DICE_SMOOTH = 1e-5


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Batch-wise soft Dice loss averaged over classes.

    ``probs``: (N, K, H, W) softmax probabilities; ``target``: (N, H, W) class indices.
    Per class c: ``1 - (2 sum(s t) + 1e-5) / (sum(s^2) + sum(t^2) + 1e-5)`` summed over the
    whole batch (not per sample), then the mean over the K classes.
    """
    num_classes = probs.shape[1]
    onehot = F.one_hot(target.long(), num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    dims = (0, 2, 3)
    intersect = (probs * onehot).sum(dims)
    denom = (probs * probs).sum(dims) + (onehot * onehot).sum(dims)
    per_class = 1.0 - (2.0 * intersect + DICE_SMOOTH) / (denom + DICE_SMOOTH)
    return per_class.mean()


def ce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``0.5 * (CE + Dice)`` of one output against its label map (same spatial size)."""
    logits = logits.float()
    if logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in size")
    ce = F.cross_entropy(logits, target.long())
    dice = soft_dice_loss(torch.softmax(logits, dim=1), target)
    return 0.5 * (ce + dice)


def supervised_loss(outputs: Sequence[torch.Tensor | None],
                    targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """L_sup: the sum of ``ce_dice_loss`` over the outputs that exist (None = switched off)."""
    terms = [ce_dice_loss(o, t) for o, t in zip(outputs, targets) if o is not None]
    if not terms:
        raise ValueError("supervised_loss needs at least one output")
    return torch.stack(terms).sum()
