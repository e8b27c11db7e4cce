"""Prediction maps at the original image size, and outline overlays for looking at them.

The protocol is the paper's: the argmax at S is resized back to the image's original size with
nearest neighbour and saved as 0/255; ``soft`` maps resize the lesion probability bilinearly.
With K > 2 classes the argmax at S is resized the same way (nearest neighbour, as the ACDC
protocol does, so that scores compare with published ones) and saved as class indices; ``soft``
gives one bilinearly resized probability map per class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

PRED_COLOUR = (255, 40, 40)  # predicted contour in the overlays
GT_COLOUR = (40, 230, 40)  # ground-truth contour, when the set has masks


def maps_at_original_size(probs: torch.Tensor, sizes: Sequence[tuple[int, int]],
                          soft: bool = False) -> list[np.ndarray]:
    """Per image, a uint8 (H, W) map at its original size.

    Binary: lesion = argmax is not background, taken at S and resized with nearest neighbour
    (``nearest-exact``: pixel centres, the same samples as PIL's NEAREST), values 0/255.
    Soft: P(lesion) = 1 - P(background), resized bilinearly, then scaled to 0-255.
    """
    maps = []
    for p, (h, w) in zip(probs, sizes):
        if soft:
            fg = (1.0 - p[0:1])[None]
            fg = F.interpolate(fg, size=(int(h), int(w)), mode="bilinear", align_corners=False)
            out = torch.round(fg[0, 0].clamp(0, 1) * 255)
        else:
            label = (p.argmax(dim=0) != 0).to(torch.uint8)[None, None]
            out = F.interpolate(label, size=(int(h), int(w)), mode="nearest-exact")[0, 0] * 255
        maps.append(out.to(torch.uint8).cpu().numpy())
    return maps


def labels_at_original_size(probs: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Per image, uint8 (H, W) class indices 0..K-1: the argmax at S resized with nearest neighbour.

    Nearest neighbour of the argmax rather than the argmax of resized probabilities: it is the
    protocol of the published multi-class results (and of binary decseg), and needs no K x H x W
    buffer at the original size.
    """
    maps = []
    for p, (h, w) in zip(probs, sizes):
        label = p.argmax(dim=0).to(torch.uint8)[None, None]
        out = F.interpolate(label, size=(int(h), int(w)), mode="nearest-exact")[0, 0]
        maps.append(out.cpu().numpy())
    return maps


def class_maps_at_original_size(probs: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Per image, uint8 (K, H, W): each class's probability resized bilinearly, scaled to 0-255."""
    maps = []
    for p, (h, w) in zip(probs, sizes):
        up = F.interpolate(p[None].float(), size=(int(h), int(w)), mode="bilinear", align_corners=False)[0]
        maps.append(torch.round(up.clamp(0, 1) * 255).to(torch.uint8).cpu().numpy())
    return maps


def contour(mask: np.ndarray, width: int) -> np.ndarray:
    """Boolean outline of ``mask``, ``width`` pixels thick, inside the object."""
    from scipy import ndimage

    mask = mask.astype(bool)
    inner = ndimage.binary_erosion(mask, iterations=max(1, width), border_value=0)
    return mask & ~inner


def overlay_image(image: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 image with the predicted outline (red) and, if given, the ground truth's (green)."""
    rgb = image[..., :3] if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, axis=-1)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    width = max(1, round(max(rgb.shape[:2]) / 200))  # visible at any image size
    if gt is not None:
        rgb[contour(gt, width)] = GT_COLOUR
    rgb[contour(pred > 127, width)] = PRED_COLOUR
    return rgb


def overlay_classes(image: np.ndarray, labels: np.ndarray, gt: np.ndarray | None = None,
                    opacity: float = 0.45) -> np.ndarray:
    """RGB uint8 image for K > 2: each predicted class filled in its palette colour (``opacity``)
    and, if given, each ground-truth class outlined in the same colour (decseg.labels.PALETTE)."""
    from decseg.labels import PALETTE

    rgb = image[..., :3] if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, axis=-1)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    labels = np.asarray(labels, dtype=np.uint8)
    fg = labels != 0
    blend = (1 - opacity) * rgb[fg].astype(np.float64) + opacity * PALETTE[labels[fg]].astype(np.float64)
    rgb[fg] = np.round(blend).astype(np.uint8)
    if gt is not None:
        width = max(1, round(max(rgb.shape[:2]) / 200))  # visible at any image size
        gt = np.asarray(gt, dtype=np.uint8)
        for c in np.unique(gt[gt != 0]).tolist():
            rgb[contour(gt == c, width)] = PALETTE[c]
    return rgb


def overlay_folder(out: str | Path) -> Path:
    """Where ``--overlay`` pictures go: ``PRED_overlay`` beside ``PRED`` (never inside it)."""
    out = Path(out)
    return out.with_name(out.name + "_overlay")
