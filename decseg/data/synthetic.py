"""Deterministic endoscopy-like synthetic lesion images (numpy only, vectorised).

Each image: a textured mucosa-like background (1/f noise plus a vessel network), vignetting,
a possible dark circular aperture, specular highlights, colour/illumination changes between
images and sensor noise; 1-3 lesions with irregular, soft boundaries, radii drawn
log-uniformly over an 11x range (3%-33% of the image), some with very low contrast.

Image ``i`` of a split depends only on ``(seed, split, i)``, so outputs are byte-identical for
a seed and adding images never changes the earlier ones.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from decseg.data.imageio import write_image_png, write_mask_png
from decseg.data.splits import labeled_split, write_id_list
from decseg.errors import DataError
from decseg.io import atomic_dir

SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
RADIUS_RANGE = (0.03, 0.33)  # lesion radius as a fraction of the image size


@functools.lru_cache(maxsize=8)
def _freq(size: int) -> np.ndarray:
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    f[0, 0] = 1.0
    return f


def _noise(rng: np.random.Generator, size: int, beta: float, n: int = 1) -> np.ndarray:
    """``n`` fields of 1/f^beta noise, each with zero mean and unit std (FFT filtering)."""
    white = rng.standard_normal((n, size, size))
    spec = np.fft.rfft2(white) / _freq(size) ** beta
    spec[:, 0, 0] = 0.0
    out = np.fft.irfft2(spec, s=(size, size))
    out /= out.std(axis=(1, 2), keepdims=True) + 1e-12
    return out


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return y, x


def _lesion_alpha(rng: np.random.Generator, size: int, y: np.ndarray, x: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, float]:
    """(soft alpha in [0, 1], normalised radial distance, radius in px) of one irregular blob."""
    lo, hi = RADIUS_RANGE
    radius = size * math.exp(rng.uniform(math.log(lo), math.log(hi)))
    margin = min(radius, 0.35 * size)
    cy, cx = rng.uniform(margin * 0.5, size - margin * 0.5, size=2)
    dy, dx = y - cy, x - cx
    theta = np.arctan2(dy, dx)
    dist = np.hypot(dy, dx)
    boundary = np.ones_like(theta)
    for k in range(2, 6):  # low-order lobes make the outline irregular
        boundary += rng.uniform(0, 0.22 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    boundary *= radius
    # Fine-scale wobble of the boundary, proportional to the lesion size.
    dist = dist + 0.08 * radius * _noise(rng, size, 1.6)[0]
    softness = rng.uniform(0.4, 2.5) * (1 + radius / size * 4)
    alpha = 1.0 / (1.0 + np.exp(np.clip((dist - boundary) / softness, -50, 50)))
    return alpha, dist / np.maximum(boundary, 1e-6), radius


def generate_image(seed: int, split: str, index: int, size: int = 128) -> tuple[np.ndarray, np.ndarray, dict]:
    """(uint8 HxWx3 image, bool HxW mask, info) of image ``index`` of ``split``."""
    rng = np.random.default_rng([int(seed), SPLIT_CODE[split], int(index)])
    y, x = _grid(size)

    # Mucosa: per-image base colour, large smooth folds, fine texture, vessels.
    base = np.array([rng.uniform(0.62, 0.88), rng.uniform(0.28, 0.5), rng.uniform(0.22, 0.42)])
    fields = _noise(rng, size, 2.2, 2)
    folds, fine, vessel_src = fields[0], fields[1], _noise(rng, size, 1.4)[0]
    img = base[:, None, None] * (1 + 0.12 * folds + 0.05 * fine)[None]
    vessels = np.exp(-(vessel_src / rng.uniform(0.05, 0.12)) ** 2) * rng.uniform(0.1, 0.35)
    img = img * (1 - vessels * np.array([0.3, 0.8, 0.7])[:, None, None])

    # Lesions: 1-3, each with its own colour change, texture and dome shading.
    n_lesions = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    mask = np.zeros((size, size), dtype=bool)
    radii = []
    for _ in range(n_lesions):
        alpha, rel, radius = _lesion_alpha(rng, size, y, x)
        contrast = math.exp(rng.uniform(math.log(0.06), math.log(0.7)))  # some barely visible
        direction = rng.normal([0.5, -0.6, -0.4], 0.4)
        direction /= np.linalg.norm(direction) + 1e-9
        dome = 1 + 0.5 * contrast * np.clip(1 - rel ** 2, 0, 1)
        texture = 0.05 * _noise(rng, size, 1.3)[0]
        lesion = img * (1 + contrast * direction[:, None, None]) * dome[None] + texture[None]
        img = img * (1 - alpha[None]) + lesion * alpha[None]
        mask |= alpha > 0.5
        radii.append(radius)

    # Illumination: vignetting around an off-centre light, gain, colour temperature, gamma.
    ly, lx = rng.uniform(0.3, 0.7, size=2) * size
    r2 = ((y - ly) ** 2 + (x - lx) ** 2) / (0.5 * size) ** 2
    img = img * np.clip(1 - rng.uniform(0.15, 0.45) * r2 ** 1.5, 0.05, 1)[None]
    img = img * rng.uniform(0.75, 1.2) * rng.uniform(0.9, 1.1, size=3)[:, None, None]
    img = np.clip(img, 0, 1) ** rng.uniform(0.8, 1.25)

    # Specular highlights: the brightest few per mille of a smooth field saturate to white.
    spec_src = _noise(rng, size, 2.6)[0]
    thr = np.quantile(spec_src, 1 - rng.uniform(0.002, 0.015))
    spec = np.clip((spec_src - thr) / (0.25 * spec_src.std()), 0, 1)
    img = img + spec[None] * (1 - img)

    img = img + rng.normal(0, 0.008, img.shape)
    if rng.uniform() < 0.3:  # endoscope aperture: dark corners, lesions there are invisible
        rad = rng.uniform(0.62, 0.75) * size
        ap = np.clip(rad - np.hypot(y - size / 2, x - size / 2), 0, 1)
        img = img * ap[None]
        mask &= ap > 0.5
    out = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    return np.ascontiguousarray(out), mask, {"lesions": n_lesions, "radii": radii}


def _write_split(folder: Path, seed: int, split: str, n: int, size: int, prefix: str) -> list[str]:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        image, mask, _ = generate_image(seed, split, i, size)
        id_ = f"{prefix}{i:04d}"
        write_image_png(folder / "images" / f"{id_}.png", image)
        write_mask_png(folder / "masks" / f"{id_}.png", mask)
        ids.append(id_)
    return ids


def generate_dataset(out: str | Path, n: int = 200, size: int = 128, seed: int = 1337,
                     labeled: float | int = 0.1, n_val: int = 20, n_test: int = 40,
                     overwrite: bool = False) -> Path:
    """Write a complete synthetic dataset (train pool, val, ``test/synth-test``, splits)."""
    if n < 2:
        raise DataError(f"--n {n}: need at least 2 training images")
    if size < 32:
        raise DataError(f"--size {size}: images must be at least 32 px")
    if n_val < 0 or n_test < 0:
        raise DataError("--n-val and --n-test must not be negative")
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        ids = _write_split(tmp / "train", seed, "train", n, size, "train_")
        lab, unl, note = labeled_split(ids, labeled, seed)
        if not lab:
            lab, unl = labeled_split(ids, 1, seed)[:2]
            note += ", raised to 1"
        (tmp / "splits").mkdir()
        write_id_list(tmp / "splits" / "labeled.txt", lab)
        write_id_list(tmp / "splits" / "unlabeled.txt", unl)
        val = _write_split(tmp / "val", seed, "val", n_val, size, "val_") if n_val else []
        if val:
            write_id_list(tmp / "splits" / "val.txt", val)
        if n_test:
            _write_split(tmp / "test" / "synth-test", seed, "test", n_test, size, "test_")
        info: dict[str, Any] = {
            "name": "synth", "channels": 3, "classes": 2,
            "size": max(32, 32 * round(size / 32)),  # the input size S (a multiple of 32)
            "task": "synth", "source": "decseg synth", "seed": int(seed), "image_size": int(size),
            "train_pool": n, "labeled": len(lab), "unlabeled": len(unl), "labeled_request": note,
            "val": len(val), "val_storage": "val/ folder (separate images, not from the train pool)",
            "test_sets": {"synth-test": n_test} if n_test else {},
        }
        (tmp / "dataset.yaml").write_text(yaml.safe_dump(info, sort_keys=False), encoding="utf-8")
    return out
