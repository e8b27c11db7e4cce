"""Polyp: the PraNet split (TrainDataset/, TestDataset/SET/), or raw Kvasir-SEG and CVC-ClinicDB.

The raw downloads have no test split: a seeded 10% of each source becomes its test set.
See docs/DATA.md.
"""
from __future__ import annotations

from pathlib import Path

from decseg.data.prepare.common import Found, SourceSettings, find_folders, images_masks, pair_folders
from decseg.errors import DataError

SETTINGS = SourceSettings(size=352, val=0.05, test=0.1)


def scan(src: Path) -> Found:
    ignored: list[str] = []
    train_dirs = find_folders(src, lambda d: d.name == "TrainDataset" and images_masks(d) is not None, 1)
    if train_dirs:
        train_dir = train_dirs[0]
        im, mk = images_masks(train_dir)  # type: ignore[misc]
        found = Found(pair_folders(im, mk, ignored), source="PraNet TrainDataset/TestDataset")
        test_root = train_dir.parent / "TestDataset"
        if test_root.is_dir():
            for d in sorted(test_root.iterdir()):
                if d.is_dir() and images_masks(d):
                    found.tests[d.name] = pair_folders(*images_masks(d), ignored)  # type: ignore[misc]
        found.ignored = ignored
        return found
    # Raw downloads: Kvasir-SEG (images/, masks/) and CVC-ClinicDB (Original/, Ground Truth/).
    kvasir = find_folders(src, lambda d: images_masks(d) is not None)
    clinic = find_folders(src, lambda d: (d / "Original").is_dir() and (d / "Ground Truth").is_dir())
    if not kvasir and not clinic:
        raise DataError(
            f"{src}: no polyp data found. Expected the PraNet split (TrainDataset/{{images,masks}} and "
            f"TestDataset/SET/{{images,masks}}), or raw Kvasir-SEG (images/, masks/) and/or "
            f"CVC-ClinicDB (Original/, Ground Truth/) folders; see docs/DATA.md")
    found = Found([], source="raw Kvasir-SEG / CVC-ClinicDB (seeded 90/10 train/test per source)")
    # The first (shallowest) match of each kind is used; others are listed as ignored.
    if kvasir:
        found.carve_tests["Kvasir"] = pair_folders(*images_masks(kvasir[0]), ignored)  # type: ignore[misc]
    if clinic:
        found.carve_tests["CVC-ClinicDB"] = pair_folders(clinic[0] / "Original", clinic[0] / "Ground Truth",
                                                         ignored)
    ignored += [str(d) for d in kvasir[1:] + clinic[1:]]
    found.ignored = ignored
    return found
