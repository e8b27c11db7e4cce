"""Build the dataset layout from the public benchmark downloads.

Tasks: ``polyp`` (PraNet TrainDataset/TestDataset, or raw Kvasir-SEG / CVC-ClinicDB),
``isic2018`` (task 1, seeded 80/20 train/test), ``lgg`` (kaggle_3m, split by patient) and
``folder`` (SRC/images + SRC/masks). docs/DATA.md documents what each accepts. Each task is a
module here with its scanner and settings; ``common`` holds what they share.

Every image/mask pair is decoded and checked once. Problems (unreadable file, image without
mask or the reverse, size mismatch) are collected; without ``skip_bad`` they stop the run
with a DataError listing them, with it they are left out and listed in
``DATA/prepare_report.json``. Everything is written into a temp folder renamed at the end.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from decseg.data.prepare import folder, isic2018, lgg, polyp
from decseg.data.prepare.common import build
from decseg.data.splits import Amount
from decseg.errors import DataError

SOURCES = {"polyp": polyp, "isic2018": isic2018, "lgg": lgg, "folder": folder}
TASKS = tuple(SOURCES)


def prepare_dataset(task: str, src: str | Path, out: str | Path, labeled: Amount | str = 0.1,
                    val: Amount | str | None = None, test: Amount | str | None = None, seed: int = 1337,
                    skip_bad: bool = False, only_lesion: bool = False, protocol: str = "standard",
                    workers: int = 4, overwrite: bool = False, intensity: str = "auto", classes: int = 2,
                    label_map: dict[int, int] | None = None, class_names: list[str] | None = None
                    ) -> dict[str, Any]:
    """Build ``out`` from the download at ``src``; returns the report written to prepare_report.json.

    ``classes`` K > 2: masks must hold class indices 0..K-1, or stored values that ``label_map``
    ({value: class}) sends to them; ``class_names`` names the K classes in dataset.yaml.

    ``val`` / ``test`` default to the task's own fractions (``SETTINGS`` in its module).
    ``intensity``: how non-8-bit images become 8-bit (a data.intensity form, or "dataset").
    """
    if task not in SOURCES:
        raise DataError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return build(SOURCES[task], task, src, out, labeled=labeled, val=val, test=test, seed=seed,
                 skip_bad=skip_bad, only_lesion=only_lesion, protocol=protocol, workers=workers,
                 overwrite=overwrite, intensity=intensity, classes=classes, label_map=label_map,
                 class_names=class_names)


VOLUME_TASKS = ("volumes", "nnunet", "acdc")


def prepare_volume_dataset(task: str, src: str | Path, out: str | Path, *, labeled_cases: int = 7,
                           **options: Any) -> dict[str, Any]:
    """``decseg prepare volumes|nnunet|acdc``: 3D sources sliced into the layout, split by volume or
    patient (decseg.data.prepare.volumes; options as in VolumeOptions, None = the default)."""
    from decseg.data.prepare import acdc, nnunet, volumes

    if task == "acdc":
        return acdc.prepare_acdc(src, out, labeled_cases=labeled_cases, **options)
    if task not in VOLUME_TASKS:
        raise DataError(f"unknown task {task!r}; choose one of {', '.join(VOLUME_TASKS)}")
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"--src {src}: folder not found")
    source = volumes.scan(src) if task == "volumes" else nnunet.scan(src)
    return volumes.build_volumes(source, src, out, volumes.options_from(options))


__all__ = ["prepare_dataset", "prepare_volume_dataset", "TASKS", "VOLUME_TASKS", "SOURCES"]
