"""Small writers of fake downloads for the data tests (real files on disk)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def disk_mask(h: int = 24, w: int = 32, r: float = 6, empty: bool = False) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    m = (y - h / 2) ** 2 + (x - w / 2) ** 2 < r * r
    return np.zeros_like(m) if empty else m


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def pair(img_dir: Path, mask_dir: Path, stem: str, ext: str = ".png", mask_ext: str = ".png",
         mask_suffix: str = "", seed: int = 0, h: int = 24, w: int = 32, empty: bool = False,
         full: bool = False) -> None:
    save(img_dir / f"{stem}{ext}", rgb(h, w, seed))
    m = np.full((h, w), 255, np.uint8) if full else disk_mask(h, w, empty=empty).astype(np.uint8) * 255
    save(mask_dir / f"{stem}{mask_suffix}{mask_ext}", m)


def folder_dataset(src: Path, n: int = 20, prefix: str = "img") -> Path:
    for i in range(n):
        pair(src / "images", src / "masks", f"{prefix}{i:03d}", seed=i, empty=(i % 7 == 0))
    return src
