"""Which files are images, and the "stem -> file" index that every folder of images goes through.

The standard library and :mod:`decseg.errors` only, so that the data layer, the
evaluator and the CLI read the same file types and find the same files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from decseg.errors import DataError

# The image files decseg reads: the data layer decodes all of them (docs/DATA.md), and the
# evaluator reads them as MATLAB's imread would (docs/EVALUATION.md).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm")
# Files that are never images and never worth a complaint.
IGNORED_NAMES = ("thumbs.db", "desktop.ini")


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
