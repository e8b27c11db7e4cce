"""Any folder: SRC/images + SRC/masks with matching names, and optional test sets SRC/test/SET/.

Without test sets, ``--test`` (default 0) carves ``test/test`` from the pool. See docs/DATA.md.
"""
from __future__ import annotations

from pathlib import Path

from decseg.data.prepare.common import Found, SourceSettings, images_masks, pair_folders
from decseg.errors import DataError

SETTINGS = SourceSettings(size=352, val=0.1, test=0.0, test_from_pool=True)


def scan(src: Path) -> Found:
    ignored: list[str] = []
    im_mk = images_masks(src)
    if im_mk is None:
        raise DataError(f"{src}: expected {src}/images and {src}/masks with matching file names")
    found = Found(pair_folders(*im_mk, ignored), source=f"folder {src}")
    test_root = src / "test"
    if test_root.is_dir():
        for d in sorted(test_root.iterdir()):
            if d.is_dir():
                sub = images_masks(d)
                if sub is None:
                    raise DataError(f"{d}: a test set needs images/ and masks/ folders")
                found.tests[d.name] = pair_folders(*sub, ignored)
    found.ignored = ignored
    return found
