"""ISIC 2018 task 1: the training set (ISIC_*.jpg, ISIC_*_segmentation.png), split 80/20 train/test.

See docs/DATA.md.
"""
from __future__ import annotations

from pathlib import Path

from decseg.data.prepare.common import Found, SourceSettings, find_folders, pair_folders
from decseg.errors import DataError

SETTINGS = SourceSettings(size=352, val=0.05, test=0.2)


def scan(src: Path) -> Found:
    ignored: list[str] = []
    inputs = find_folders(src, lambda d: d.name == "ISIC2018_Task1-2_Training_Input", 2)
    truths = find_folders(src, lambda d: d.name == "ISIC2018_Task1_Training_GroundTruth", 2)
    if not inputs or not truths:
        raise DataError(f"{src}: expected ISIC2018_Task1-2_Training_Input/ (ISIC_*.jpg) and "
                        f"ISIC2018_Task1_Training_GroundTruth/ (ISIC_*_segmentation.png); see docs/DATA.md")
    pairs = pair_folders(inputs[0], truths[0], ignored, mask_suffix="_segmentation")
    return Found([], ignored=ignored, source="ISIC 2018 task 1 training set (seeded 80/20 train/test)",
                 carve_tests={"isic2018": pairs})
