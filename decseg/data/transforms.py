"""Tensor transforms of one sample: resizing, colour jitter, geometric augmentation.

All randomness comes from an explicit ``torch.Generator`` so a sample's views are a
function of (seed, stream, position) only - never of worker count or call order.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from decseg.config import INTERPOLATIONS

BRIGHTNESS = 0.2  # ColorJitter(brightness=0.2, hue=0.05), as in the paper
HUE = 0.05


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWxC -> float CxHxW in [0, 1] (pixels / 255, no mean/std)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def _resize_axis_aware(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``area`` when shrinking, ``bilinear`` when enlarging, per axis when the two differ."""
    h, w = x.shape[-2:]
    th, tw = size
    if th <= h and tw <= w:
        return F.interpolate(x, size=size, mode="area")
    if th >= h and tw >= w:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    # One axis shrinks, the other grows: do them one after the other.
    x = F.interpolate(x, size=(min(th, h), min(tw, w)), mode="area")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def resize_image(image: torch.Tensor, size: int | tuple[int, int], mode: str = "area") -> torch.Tensor:
    """Resize a CxHxW (or NxCxHxW) float image; ``mode`` is ``data.interpolation``."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    x = image[None] if image.dim() == 3 else image
    if tuple(x.shape[-2:]) == size:
        out = x.clone()
    elif mode == "area":
        out = _resize_axis_aware(x, size)
    elif mode == "bilinear":
        out = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    elif mode == "parity":  # the released code's nearest-neighbour resize of images
        out = F.interpolate(x, size=size, mode="nearest-exact")
    else:
        raise ValueError(f"unknown interpolation {mode!r}; use one of {INTERPOLATIONS}")
    out = out.clamp_(0.0, 1.0)
    return out[0] if image.dim() == 3 else out


def resize_mask(mask: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour (pixel-centre) resize of an HxW mask (bool, or uint8 class indices);
    returns long class indices (0/1 for a binary mask): nearest neighbour never invents a class."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    m = mask.to(torch.uint8)[None, None]
    if tuple(m.shape[-2:]) != size:
        m = F.interpolate(m, size=size, mode="nearest-exact")
    return m[0, 0].long()


def color_jitter(image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """ColorJitter(brightness=0.2, hue=0.05): factors and order drawn from ``gen``."""
    b = float(torch.empty(()).uniform_(1 - BRIGHTNESS, 1 + BRIGHTNESS, generator=gen))
    h = float(torch.empty(()).uniform_(-HUE, HUE, generator=gen))
    order = torch.randperm(2, generator=gen).tolist()
    for op in order:
        if op == 0:
            image = TF.adjust_brightness(image, b)
        elif image.shape[-3] == 3:  # hue needs RGB
            image = TF.adjust_hue(image, h)
    return image.clamp_(0.0, 1.0)


def geometric(image: torch.Tensor, mask: torch.Tensor, gen: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flip + 90-degree rotation of a CxHxW image and its HxW mask (any dtype:
    the mask's pixels are moved, never interpolated, so class indices stay exact)."""
    k = int(torch.randint(0, 4, (), generator=gen))
    flip = bool(torch.randint(0, 2, (), generator=gen))
    if flip:
        image, mask = image.flip(-1), mask.flip(-1)
    if k:
        image, mask = torch.rot90(image, k, (-2, -1)), torch.rot90(mask, k, (-2, -1))
    return image.contiguous(), mask.contiguous()
