"""Which files are images, how large an image may be, the "stem -> file" index that every folder
of images goes through, and the early check of an output path.

The standard library and :mod:`decseg.errors` only (Pillow inside :func:`open_image`), so that
the data layer, the evaluator and the CLI read the same file types, find the same files and
refuse the same oversized images.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Iterable

from decseg.errors import ConfigError, DataError, ResourceError, file_in_the_way

# The image files decseg reads: the data layer decodes all of them (docs/DATA.md), and the
# evaluator reads them as MATLAB's imread would (docs/EVALUATION.md).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm")
# Files that are never images and never worth a complaint.
IGNORED_NAMES = ("thumbs.db", "desktop.ini")


# The most pixels (height x width) an image may have before it is decoded, for every decoder
# (Pillow's PNG, JPEG, BMP, GIF, WebP, PPM and tifffile's TIFF), in the data layer and the
# evaluator alike. The default is Pillow's own decompression-bomb limit (2 x its
# MAX_IMAGE_PIXELS of 89,478,485; a 13,377 x 13,377 image), so nothing that decoded before is
# refused, and TIFFs, which Pillow's guard never saw, get the same one. It is ~6x the largest
# photo of the supported benchmarks (ISIC 2018, ~30 megapixels) and still decodes to 537 MB as
# RGB, per image and thread; the environment variable raises or lowers it.
MAX_PIXELS_ENV = "DECSEG_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 2 * 89_478_485
_PILLOW_BOMB = re.compile(r"\((\d+) pixels\)")


def max_pixels() -> int:
    """The pixel limit: ``$DECSEG_MAX_PIXELS`` (read at every call) or :data:`DEFAULT_MAX_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = float(text.replace("_", ""))  # 400000000, 4e8 and 400_000_000 alike
    except ValueError:
        value = float("nan")
    if not (value >= 1 and value == int(value) and value < 2**63):
        raise ConfigError(f"{MAX_PIXELS_ENV}={text!r}: expected a whole number of pixels >= 1, e.g. "
                          f"{MAX_PIXELS_ENV}=400000000 (the default is {DEFAULT_MAX_PIXELS})")
    return int(value)


def too_many_pixels(path: str | Path, pixels: int | None, limit: int,
                    size: tuple[int, int] | None = None) -> DataError:
    """The DataError for an image over the limit: the file, its size, the limit, how to raise it."""
    if pixels is None:
        what = "more pixels than"
        raise_to = 2 * limit
    else:
        what = (f"{size[1]} x {size[0]} = " if size else "") + f"{pixels:,} pixels, more than"
        raise_to = -(-pixels // 1_000_000) * 1_000_000
    return DataError(f"{path}: image of {what} the limit of {limit:,} pixels that guards against "
                     f"decompression bombs; if the image is genuine, raise the limit with the environment "
                     f"variable {MAX_PIXELS_ENV}={raise_to} (or shrink the image)")


def check_pixels(path: str | Path, height: int, width: int, limit: int | None = None) -> None:
    """Raise :func:`too_many_pixels` when a ``height`` x ``width`` image exceeds the limit."""
    limit = max_pixels() if limit is None else limit
    if int(height) * int(width) > limit:
        raise too_many_pixels(path, int(height) * int(width), limit, (int(height), int(width)))


def open_image(path: str | Path, limit: int | None = None):
    """``PIL.Image.open(path)``: the header only, with the pixel limit checked before any decoding.

    Pillow's own guard warns above ``Image.MAX_IMAGE_PIXELS`` and refuses above twice that. It is
    raised (for the process) only when ``DECSEG_MAX_PIXELS`` goes beyond it, so that Pillow never
    refuses what decseg allows; its refusals and the check here give the same one-line DataError.
    """
    from PIL import Image

    limit = max_pixels() if limit is None else limit
    if Image.MAX_IMAGE_PIXELS is not None and 2 * Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = -(-limit // 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the check below decides
        try:
            img = Image.open(path)
        except Image.DecompressionBombError as e:  # "Image size (N pixels) exceeds limit of ..."
            found = _PILLOW_BOMB.search(str(e))
            raise too_many_pixels(path, int(found.group(1)) if found else None, limit) from None
    try:
        check_pixels(path, img.height, img.width, limit)
    except DataError:
        img.close()
        raise
    return img


def read_tiff_page(path: str | Path, limit: int | None = None):
    """``(pixels, photometric name)`` of a TIFF's first page (as MATLAB's imread reads it),
    with the pixel limit checked from the page header before anything is decoded."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        check_pixels(path, page.imagelength, page.imagewidth, limit)
        return page.asarray(), getattr(page.photometric, "name", "")


def check_output(path: str | Path, option: str = "--out", kind: str = "folder", example: str = "") -> Path:
    """Fail before any heavy work, naming ``option``, when ``path`` cannot be written.

    A folder above ``path`` that is a regular file (``--out notes.txt/run``) can hold nothing;
    ``kind="folder"``: ``path`` must not be a file; ``kind="file"``: it must not be a folder
    (``example`` is a file name to suggest inside it). Returns ``path`` as a Path.
    """
    p = Path(path)
    blocker = file_in_the_way(p)
    if blocker is not None:
        raise ResourceError(f"{option} {p}: {blocker} is a file, not a folder, so nothing can be written "
                            f"below it; choose another {option}")
    if kind == "folder" and p.exists() and not p.is_dir():
        raise ResourceError(f"{option} {p} is a file; give a folder (a new or empty one)")
    if kind == "file" and p.is_dir():
        hint = f", e.g. {p / example}" if example else ""
        raise ResourceError(f"{option} {p} is a folder; give a file path{hint}")
    return p


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_ignorable(path: str | Path) -> bool:
    """Hidden files and OS clutter (.DS_Store, Thumbs.db) that folders of images often contain."""
    name = Path(path).name
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def index_by_stem(folder: str | Path | None, what: str = "images", *,
                  paths: Iterable[str | Path] | None = None, strict: bool = True,
                  skipped: list[str] | None = None, fix: str = "keep one of them") -> dict[str, Path]:
    """``{stem: file}`` for the image files of ``folder`` (sorted by name), or of ``paths`` (in order).

    The stem is the ID (``a.png`` -> ``a``), so two files with one stem (``a.png`` and ``a.jpg``)
    are a DataError naming both, ending with ``fix`` (what the caller's user should do);
    ``what`` names the files in that message ("images", "GT files").

    Listing ``folder``: sub-folders, hidden files and OS clutter are passed over; a file that
    is not an image is a DataError naming it when ``strict``, otherwise passed over too.
    Every file passed over is appended to ``skipped`` when it is given. ``paths``: files named
    one by one (``folder`` is then unused); each must exist and be an image, hidden or not.
    """
    if paths is None:
        folder = Path(folder)  # type: ignore[arg-type]
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found")
        files = []
        for p in sorted(folder.iterdir()):
            if p.is_dir():
                continue
            if is_ignorable(p) or not (strict or is_image_name(p)):
                if skipped is not None:
                    skipped.append(str(p))
                continue
            files.append(p)
        where, move = f"{folder}: ", f"; move it out of {folder}"
    else:
        files = [Path(p) for p in paths]
        for p in files:
            if not p.is_file():
                raise DataError(f"{p}: file not found")
        where, move = "", ""
    index: dict[str, Path] = {}
    for p in files:
        if not is_image_name(p):
            raise DataError(f"{p}: not an image file (supported: {', '.join(IMAGE_EXTENSIONS)}){move}")
        if p.stem in index:
            first = index[p.stem]
            how = " with different extensions" if first.suffix != p.suffix else ""
            named = f"{first.name} and {p.name}" if where else f"{first} and {p}"
            raise DataError(f"{where}two {what} share the name {p.stem!r}{how} ({named}); {fix}")
        index[p.stem] = p
    return index
