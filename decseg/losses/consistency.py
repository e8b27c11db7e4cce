"""Consistency losses: MSE between probability maps and between images (mean over all elements)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def upsample_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize with align_corners=True (the ``Up`` of DESIGN.md section 2)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements, computed in float32."""
    return F.mse_loss(a.float(), b.float())


def scale_consistency(full_probs: torch.Tensor, half_probs: torch.Tensor) -> torch.Tensor:
    """``MSE(s_full, Up(s_half))``: the half-scale map is upsampled to the full size."""
    return mse(full_probs, upsample_to(half_probs.float(), full_probs.shape[-2:]))


def sigmoid_rampup(iteration: int, length: int) -> float:
    """The common ``exp(-5 (1 - t)^2)`` ramp-up from 0 to 1 over ``length`` iterations; 1 if length is 0."""
    if length <= 0:
        return 1.0
    t = min(max(iteration, 0), length) / length
    return math.exp(-5.0 * (1.0 - t) ** 2)
