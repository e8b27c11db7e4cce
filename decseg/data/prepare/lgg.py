"""LGG (kaggle_3m): one folder per patient of *_N.tif slices and *_N_mask.tif masks, split by patient.

``--protocol paper``: lesion slices only, 25% of the patients for test (a pool of about 1,030
slices). See docs/DATA.md.
"""
from __future__ import annotations

from pathlib import Path

from decseg.data.prepare.common import Found, Pair, SourceSettings, find_folders, image_files
from decseg.errors import DataError

SETTINGS = SourceSettings(size=256, val=0.1, test=0.2, paper_test=0.25, paper_only_lesion=True,
                          by_patient=True)


def scan(src: Path) -> Found:
    ignored: list[str] = []
    found = find_folders(src, lambda d: any(p.name.endswith("_mask.tif") for p in d.iterdir()), 3)
    # The Kaggle archive holds kaggle_3m/ twice (also under lgg-mri-segmentation/): keep the
    # shallowest copy of each patient.
    patients, seen = [], set()
    for d in found:
        if d.name in seen:
            ignored.append(str(d))
            continue
        seen.add(d.name)
        patients.append(d)
    if not patients:
        raise DataError(f"{src}: no LGG patient folders found (folders with *_N.tif slices and "
                        f"*_N_mask.tif masks, as in kaggle_3m/); see docs/DATA.md")
    pairs: list[Pair] = []
    for d in patients:
        imgs: dict[str, Path] = {}
        msks: dict[str, Path] = {}
        for stem, p in image_files(d, ignored).items():
            if stem.endswith("_mask"):
                msks[stem[:-5]] = p
            else:
                imgs[stem] = p
        pairs += [Pair(i, imgs.get(i), msks.get(i), d.name) for i in sorted(set(imgs) | set(msks))]
    return Found([], ignored=ignored, source="LGG kaggle_3m (split by patient)", carve_tests={"lgg": pairs})
