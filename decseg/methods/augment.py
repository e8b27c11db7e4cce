"""Strong augmentations of batch tensors on the training device (UniMatch, FixMatch, BCP).

UniMatch's strong view (Yang et al., CVPR 2023, Sec. 3 and its released medical pipeline):
colour jitter (brightness 0.5, contrast 0.5, saturation 0.5, hue 0.25) with p = 0.8, random
greyscale with p = 0.2, Gaussian blur with sigma in [0.1, 2.0] with p = 0.5, and a CutMix box
with p = 0.5 (area 2-40% of the image, aspect ratio in [0.3, 1/0.3]).

Images are float NCHW in [0, 1]; every colour operation keeps them there. Each sample draws
its own parameters. All random numbers come from torch's global CPU generator (the trainer
seeds it per rank and saves it in ``last.pt``), and are moved to the batch's device, so a seed
gives the same augmentations on CPU and GPU. Saturation, hue and greyscale act only on
3-channel (RGB) images; other channel counts skip them.

Why by hand: torchvision's functional colour ops and blur (``adjust_hue``, ``gaussian_blur``, ...)
take one factor per call, so per-sample factors would mean one call per sample and operation;
here each operation is one batched expression with a factor per sample, on the batch's device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

JITTER = dict(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25)
JITTER_P = 0.8
GREYSCALE_P = 0.2
BLUR_P, BLUR_SIGMA = 0.5, (0.1, 2.0)
CUTMIX_P, CUTMIX_AREA, CUTMIX_RATIO = 0.5, (0.02, 0.4), (0.3, 1 / 0.3)

#: ITU-R 601-2 luma, the weights of a PIL "L" conversion
LUMA = (0.299, 0.587, 0.114)


def _uniform(n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, dtype=torch.float64) * (high - low) + low


def _flags(n: int, p: float) -> torch.Tensor:
    return torch.rand(n) < p


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) CPU values -> (N, 1, 1, 1) on x's device and dtype."""
    return values.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grey level of an RGB batch (the image itself for other channel counts)."""
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    w = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``factor * x + (1 - factor) * other``, clamped to [0, 1]."""
    return (factor * x + (1 - factor) * other).clamp(0.0, 1.0)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> HSV with H in [0, 1)."""
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    chroma = v - x.min(1).values
    s = torch.where(v > 0, chroma / v.clamp_min(1e-12), torch.zeros_like(v))
    c = chroma.clamp_min(1e-12)
    sector = torch.where(v == r, torch.remainder((g - b) / c, 6.0),
                         torch.where(v == g, (b - r) / c + 2.0, (r - g) / c + 4.0))
    h = torch.where(chroma > 0, sector / 6.0, torch.zeros_like(v))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`: channel n of (5, 3, 1) is ``V - V S clamp(min(k, 4 - k), 0, 1)``
    with ``k = (n + 6 H) mod 6``."""
    h, s, v = (t.unsqueeze(1) for t in hsv.unbind(1))
    n = torch.tensor([5.0, 3.0, 1.0], device=hsv.device, dtype=hsv.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * h, 6.0)
    return v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


def shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of an RGB batch by ``shift`` (N, 1, 1, 1) turns."""
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, :1] + shift, 1.0)
    return hsv_to_rgb(torch.cat([h, hsv[:, 1:]], 1)).clamp(0.0, 1.0)


def colour_jitter(x: torch.Tensor, brightness: float = JITTER["brightness"],
                  contrast: float = JITTER["contrast"], saturation: float = JITTER["saturation"],
                  hue: float = JITTER["hue"], p: float = JITTER_P) -> torch.Tensor:
    """Each sample, with probability ``p``: brightness, contrast, saturation factors drawn from
    ``[1 - a, 1 + a]`` and a hue shift from ``[-hue, hue]``, applied in a random order (one
    order per batch). Contrast blends with the image's mean grey level, saturation with its
    grey image, as torchvision's ColorJitter does."""
    n = x.shape[0]
    apply = _per_sample(_flags(n, p).double(), x)
    fb = _per_sample(_uniform(n, 1 - brightness, 1 + brightness), x)
    fc = _per_sample(_uniform(n, 1 - contrast, 1 + contrast), x)
    fs = _per_sample(_uniform(n, 1 - saturation, 1 + saturation), x)
    fh = _per_sample(_uniform(n, -hue, hue), x)
    rgb = x.shape[1] == 3
    ops = {
        0: lambda y: (fb * y).clamp(0.0, 1.0),
        1: lambda y: _blend(y, luma(y).mean((1, 2, 3), keepdim=True), fc),
        2: lambda y: _blend(y, luma(y), fs) if rgb else y,
        3: lambda y: shift_hue(y, fh) if rgb else y,
    }
    y = x
    for k in torch.randperm(4).tolist():
        y = ops[k](y)
    return torch.where(apply > 0, y, x)


def random_greyscale(x: torch.Tensor, p: float = GREYSCALE_P) -> torch.Tensor:
    """Each RGB sample, with probability ``p``, becomes its grey image on all three channels."""
    flags = _flags(x.shape[0], p)
    if x.shape[1] != 3:
        return x
    apply = _per_sample(flags.double(), x) > 0
    return torch.where(apply, luma(x).expand_as(x), x)


def gaussian_blur(x: torch.Tensor, sigma: tuple[float, float] = BLUR_SIGMA, p: float = BLUR_P) -> torch.Tensor:
    """Each sample, with probability ``p``: a separable Gaussian blur with its own sigma drawn
    from ``sigma``; the kernel reaches 3 sigma of the largest sigma, borders are reflected."""
    n, c, h, w = x.shape
    flags = _flags(n, p)
    sig = _uniform(n, *sigma)
    radius = min(int(math.ceil(3 * sigma[1])), h - 1, w - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sig.view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).to(device=x.device, dtype=x.dtype)
    weight = kernel.repeat_interleave(c, 0)  # (N*C, K): one kernel per sample and channel
    y = x.reshape(1, n * c, h, w)
    with torch.autocast(x.device.type, enabled=False):  # blur in the images' own precision
        y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), weight.view(n * c, 1, 1, -1), groups=n * c)
        y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), weight.view(n * c, 1, -1, 1), groups=n * c)
    y = y.reshape(n, c, h, w).clamp(0.0, 1.0)
    return torch.where(_per_sample(flags.double(), x) > 0, y, x)


def strong_colour(x: torch.Tensor) -> torch.Tensor:
    """UniMatch's photometric strong augmentations: jitter (p 0.8), greyscale (p 0.2), blur (p 0.5)."""
    return gaussian_blur(random_greyscale(colour_jitter(x)))


def cutmix_boxes(n: int, height: int, width: int, *, p: float = CUTMIX_P,
                 area: tuple[float, float] = CUTMIX_AREA, ratio: tuple[float, float] = CUTMIX_RATIO,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """(N, H, W) bool: for each sample, with probability ``p``, one box of ``area`` times the
    image (drawn once) with an aspect ratio from ``ratio``; ratio and corner are redrawn until
    the box fits, as UniMatch's ``obtain_cutmix_box``. Samples without a box are all False."""
    boxes = torch.zeros(n, height, width, dtype=torch.bool)
    for i in range(n):
        if not bool(_flags(1, p)):
            continue
        size = float(_uniform(1, *area)) * height * width
        for _ in range(10_000):
            r = float(_uniform(1, *ratio))
            bw, bh = int(math.sqrt(size / r)), int(math.sqrt(size * r))
            x0, y0 = int(torch.randint(0, width, ())), int(torch.randint(0, height, ()))
            if x0 + bw <= width and y0 + bh <= height:
                boxes[i, y0:y0 + bh, x0:x0 + bw] = True
                break
    return boxes.to(device) if device is not None else boxes


def copy_paste_box(height: int, width: int, fraction: float,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """(H, W) bool: one box of ``fraction`` of each side (``int(side * fraction)`` pixels) at a
    uniformly random position inside the image, as BCP's ``generate_mask``."""
    bh, bw = int(height * fraction), int(width * fraction)
    y0 = int(torch.randint(0, height - bh + 1, ()))
    x0 = int(torch.randint(0, width - bw + 1, ()))
    box = torch.zeros(height, width, dtype=torch.bool)
    box[y0:y0 + bh, x0:x0 + bw] = True
    return box.to(device) if device is not None else box


def paste(base: torch.Tensor, other: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """``other`` inside ``box``, ``base`` elsewhere, for images (N, C, H, W) or maps (N, H, W);
    ``box`` is (N, H, W) or (H, W) bool."""
    if base.ndim == 4:
        box = box.unsqueeze(-3)
    return torch.where(box.to(base.device), other, base)
