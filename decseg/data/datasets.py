"""Torch datasets: the four training views of a sample, and evaluation items.

Training views of one sample (docs/DATA.md): ``image`` (S), ``image_half`` (s),
``image_p`` / ``image_half_p`` (each independently colour-jittered), ``mask`` (S) and
``mask_half`` (s), both resized from the original mask by nearest neighbour.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import Dataset

from decseg.config import DataConfig
from decseg.data.imageio import image_size, read_image, read_mask
from decseg.data.layout import DatasetLayout, Item
from decseg.data.sampler import sample_seed
from decseg.data.transforms import color_jitter, geometric, image_to_tensor, resize_image, resize_mask
from decseg.errors import ConfigError, DataError
from decseg.files import IMAGE_EXTENSIONS, index_by_stem
from decseg.labels import read_label


@contextmanager
def one_thread() -> Iterator[None]:
    """Run per-sample tensor work on one intra-op thread.

    These ops are tiny; with several threads they spend more time synchronising than
    computing (measured 7x slower on a busy 2-core machine). Workers already run with one.
    """
    before = torch.get_num_threads()
    if before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before > 1:
            torch.set_num_threads(before)


def load_pair(item: Item, channels: int, with_mask: bool = True, min_side: int | None = None,
              classes: int = 2, intensity: str = "auto"
              ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int]]:
    """(float CxHxW image in [0, 1], HxW mask or None, original (H, W)).

    The mask is bool for a binary dataset (``classes`` = 2, the binary mask rule) and uint8
    class indices 0..K-1 for K > 2 (a value outside is a DataError naming the file).
    With ``min_side`` a large JPEG is decoded at reduced scale (sides >= min_side); the
    image is resized to S anyway, and the mask and the original size stay full resolution.
    ``intensity``: data.intensity, the rule for non-uint8 images (uint8 ones are pixels / 255).
    """
    array = read_image(item.image, channels, min_side, intensity)
    size = image_size(item.image) if min_side else array.shape[:2]
    image = image_to_tensor(array)
    if not with_mask or item.mask is None:
        return image, None, size
    mask = read_mask(item.mask) if classes == 2 else read_label(item.mask, classes)
    if mask.shape != tuple(size):
        raise DataError(f"{item.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                        f"{item.image.name} is {size[1]}x{size[0]} (WxH); "
                        f"re-export the mask at the image's size")
    return image, torch.from_numpy(mask), size


class TrainViews(Dataset):
    """Map-style dataset keyed by ``(stream, index, position)``; stream 0 = labeled, 1 = unlabeled.

    Labeled samples carry ``mask`` / ``mask_half``; unlabeled ones do not read their masks
    at all, so no label can leak into the unsupervised losses.
    """

    def __init__(self, streams: Sequence[Sequence[Item]], data_cfg: DataConfig, seed: int):
        check_sizes(data_cfg)
        self.streams = [list(s) for s in streams]
        self.cfg = data_cfg
        self.seed = int(seed)

    def __len__(self) -> int:  # only informative: keys are tuples, drawn by TwoStreamLoader
        return sum(len(s) for s in self.streams)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        with one_thread():
            return self._views(*key)

    def _views(self, stream: int, index: int, position: int) -> dict[str, Any]:
        item = self.streams[stream][index]
        labeled = stream == 0
        image, mask, _ = load_pair(item, self.cfg.channels, with_mask=labeled, min_side=decode_floor(self.cfg),
                                   classes=self.cfg.classes, intensity=self.cfg.intensity)
        if labeled and mask is None:
            raise DataError(f"{item.image}: labeled image without a mask in train/masks")
        gen = torch.Generator().manual_seed(sample_seed(self.seed, stream, position))
        if self.cfg.geometric_aug:
            if mask is None:
                image, _ = geometric(image, torch.zeros(image.shape[-2:], dtype=torch.bool), gen)
            else:
                image, mask = geometric(image, mask, gen)
        S, s, mode = self.cfg.size, self.cfg.half_size, self.cfg.interpolation
        full, half = resize_image(image, S, mode), resize_image(image, s, mode)
        out = {"image": full, "image_half": half,
               "image_p": color_jitter(full.clone(), gen), "image_half_p": color_jitter(half.clone(), gen),
               "id": item.id, "stream": stream}
        if mask is not None:
            out["mask"], out["mask_half"] = resize_mask(mask, S), resize_mask(mask, s)
        return out


def decode_floor(cfg: DataConfig) -> int | None:
    """Smallest side a reduced JPEG decode may have: twice S keeps it well above what it is
    resized to. ``parity`` reads full images, as the released code does."""
    return None if cfg.interpolation == "parity" else 2 * cfg.size


def check_sizes(cfg: DataConfig) -> None:
    if cfg.half_size < 1:
        raise ConfigError(f"data.size={cfg.size} gives a half-scale size of {cfg.half_size} "
                          f"(32 * round(S / 64)); use data.size >= 64")


def collate_views(samples: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {"id": [x["id"] for x in samples]}
    for key in ("image", "image_half", "image_p", "image_half_p", "mask", "mask_half"):
        if key in samples[0]:
            batch[key] = torch.stack([x[key] for x in samples])
    return batch


def list_images(folder: str | Path) -> list[Path]:
    """The image files of a folder to predict on; any other file is a DataError naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of images")
    files = list(index_by_stem(folder, "images", fix="predictions are saved as NAME.png, so rename or "
                                                     "move one of them").values())
    if not files:
        raise DataError(f"{folder}: contains no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files


class EvalDataset(Dataset):
    """Images of ``val``, a test set, ``train``, or an explicit list of image files.

    Items: ``image`` (C,S,S), ``image_half`` (C,s,s), ``mask`` (original HxW tensor: bool for
    K = 2, uint8 class indices for K > 2; None without masks), ``id``, ``orig_size`` (H, W), ``path`` (str).
    """

    def __init__(self, layout: DatasetLayout | None, split: str | Sequence[str | Path] | str,
                 data_cfg: DataConfig):
        check_sizes(data_cfg)
        self.cfg = data_cfg
        if isinstance(split, (str,)) and layout is not None:
            self.items = layout.items(split)
            self.name = split[5:] if split.startswith("test/") else split
        elif isinstance(split, (str, Path)) and Path(split).is_dir():
            self.items = [Item(p.stem, p, None) for p in list_images(split)]
            self.name = Path(split).name
        elif isinstance(split, (list, tuple)):
            self.items = self._from_paths(split)
            self.name = "images"
        else:
            raise DataError(f"{split!r}: give a split name with a dataset, a folder, or a list of image files")
        if not self.items:
            raise DataError(f"{self.name}: no images to evaluate")

    @staticmethod
    def _from_paths(paths: Sequence[str | Path]) -> list[Item]:
        index = index_by_stem(None, "images", paths=paths,
                              fix="predictions are saved by name, so rename one of them")
        return [Item(stem, p, None) for stem, p in index.items()]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        with one_thread():
            return self._item(i)

    def _item(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        image, mask, size = load_pair(item, self.cfg.channels, min_side=decode_floor(self.cfg),
                                      classes=self.cfg.classes, intensity=self.cfg.intensity)
        mode = self.cfg.interpolation
        return {"image": resize_image(image, self.cfg.size, mode),
                "image_half": resize_image(image, self.cfg.half_size, mode),
                "mask": mask, "id": item.id, "orig_size": tuple(size), "path": str(item.image)}


def collate_eval(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the resized images; keep masks, ids, sizes and paths as lists."""
    return {"image": torch.stack([x["image"] for x in samples]),
            "image_half": torch.stack([x["image_half"] for x in samples]),
            "mask": [x["mask"] for x in samples], "id": [x["id"] for x in samples],
            "orig_size": [x["orig_size"] for x in samples], "path": [x["path"] for x in samples]}
