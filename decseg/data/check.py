"""A cheap check of every file training will read, before any training time is spent.

``check_training_data(layout)`` looks at the images of both training streams, the masks of the
labeled IDs, and every val image and mask: each file must open as an image and be complete,
each mask must have its image's size, and every labeled or val image must have a mask. For a
dataset of K > 2 classes each mask is also decoded, and its values must be class indices 0..K-1
(what the losses index with; a stray 255 would crash the first step far from its file). All
problems are collected and raised together in one :class:`DataError`.

"Cheap" means no pixel decoding where the format allows it: PNG walks its chunks to IEND and
checks their CRCs (``PIL``'s ``verify``), JPEG reads the header and looks for the end-of-image
marker, TIFF reads the header and checks that the image data lies within the file. A JPEG
without the marker at its end, and the other formats (BMP, GIF, WebP, PPM), are decoded in full,
exactly as training would read them.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from decseg.data.imageio import TIFF_EXTENSIONS, image_size, read_raw
from decseg.data.layout import DatasetLayout, Item
from decseg.errors import DataError
from decseg.labels import read_label

MAX_LISTED = 20
_JPEG_END = b"\xff\xd9"


def _tiff_complete(path: Path) -> bool:
    """Whether the first page's strips or tiles all end inside the file (header reads only)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts)]
    return bool(ends) and max(ends) <= path.stat().st_size


def _jpeg_complete(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64))
        return f.read().rstrip(b"\x00\r\n ").endswith(_JPEG_END)


def _size_or_problem(path: Path) -> tuple[int, int] | str:
    """(H, W) of a complete image file, or why it cannot be used."""
    try:
        if path.stat().st_size == 0:
            return "zero-byte file"
    except OSError as e:
        return f"cannot be opened ({e.strerror})"
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_EXTENSIONS:
            if _tiff_complete(path):
                return image_size(path)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # EXIF/ICC warnings are noise here
                with Image.open(path) as img:
                    size = img.height, img.width
                    if img.format == "PNG":
                        img.verify()  # chunk CRCs up to IEND; no inflating
                        return size
                    if img.format == "JPEG" and _jpeg_complete(path):
                        return size
    except Exception:  # noqa: BLE001 - the full read below names the problem
        pass
    try:
        arr = read_raw(path)  # unsure from the header: read it as training would
    except DataError as e:
        return str(e).removeprefix(f"{path}: ")
    return arr.shape[0], arr.shape[1]


def _problems(item: Item, need_mask: bool, classes: int = 2) -> list[str]:
    size = _size_or_problem(item.image)
    found = [] if isinstance(size, tuple) else [f"{item.image}: {size}"]
    if item.mask is None:
        if need_mask:
            found.append(f"{item.image}: has no mask; add {item.image.parent.parent / 'masks' / item.id}.png")
        return found
    mask_size = _size_or_problem(item.mask)
    if not isinstance(mask_size, tuple):
        found.append(f"{item.mask}: {mask_size}")
        return found
    if classes > 2:
        try:
            read_label(item.mask, classes)
        except DataError as e:
            found.append(str(e))
    if isinstance(size, tuple) and mask_size != size:
        found.append(f"{item.mask}: mask is {mask_size[1]}x{mask_size[0]} but its image {item.image.name} "
                     f"is {size[1]}x{size[0]} (WxH); re-export the mask at the image's size")
    return found


def training_files(layout: DatasetLayout) -> list[tuple[Item, bool]]:
    """(item, needs a mask) for every file a training run reads: the splits' IDs and val.

    Unlabeled IDs come without their masks, which training never reads.
    """
    labeled = [(layout.train_item(i), True) for i in layout.labeled_ids]
    unlabeled = [(Item(i, layout.train_item(i).image, None), False) for i in layout.unlabeled_ids]
    val = [(item, True) for item in layout.items("val")] if layout.has_split("val") else []
    return labeled + unlabeled + val


def check_training_data(layout: DatasetLayout, workers: int | None = None) -> int:
    """Raise one DataError listing every problem; return the number of images and masks checked."""
    files = training_files(layout)
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # file reads and CRCs release the GIL
        found = [p for ps in pool.map(lambda f: _problems(*f, layout.classes), files) for p in ps]
    if found:
        listed = "\n".join(f"  {p}" for p in found[:MAX_LISTED])
        more = f"\n  ... and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
        raise DataError(
            f"{len(found)} problem(s) in {layout.root}, found before training:\n{listed}{more}\n"
            f"Replace these files (or remove them and their IDs from splits/*.txt), or re-run "
            f"`decseg prepare ... --skip-bad` to leave them out")
    return sum(1 + (item.mask is not None) for item, _ in files)
