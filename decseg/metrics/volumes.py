"""Per-volume metrics of sets sliced from volumes (a ``volumes.json`` beside ``masks/``).

``volumes.json`` (written by ``decseg prepare`` for volume sources) lists, per volume, its slice
IDs in order along the sliced ``axis``, the volume's ``shape`` and its voxel ``spacing`` (mm,
same axis order). The GT slices and the prediction slices of each volume are stacked back
along that axis, and each volume is scored in 3D: per foreground class Dice, IoU, HD95 (MONAI's),
HD95_medpy and ASD, with distances in mm (``distance_unit="mm"``: the spacing) or in voxels
(``"voxel"``: no spacing, the SSL4MIS/UniMatch ACDC convention). A set's numbers are means
over volumes, then over classes (:mod:`decseg.metrics.multiclass`).

Binary sets (K = 2) are read with the toolbox's rules (GT > 128; prediction / 255 >= 0.5, as
the ``dice@0.5`` extra) and get the per-volume keys of their foreground class next to the
13 toolbox keys, which stay per image.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decseg.errors import DataError
from decseg.files import index_by_stem
from decseg.metrics.folders import parallel_map, set_label, warn_unmatched
from decseg.metrics.matlab import im2double
from decseg.metrics.multiclass import (CaseRecord, aggregate_classes, read_gt_labels, read_prediction_labels,
                                       score_labels)
from decseg.metrics.readers import gt_to_mask, read_gt, read_prediction

VOLUMES_FILE = "volumes.json"
DISTANCE_UNITS = ("mm", "voxel")


@dataclass(frozen=True)
class Volume:
    """One entry of volumes.json."""

    id: str
    slices: tuple[str, ...]
    axis: int
    shape: tuple[int, ...]
    spacing: tuple[float, ...]


def volumes_file(gt_dir: str | Path) -> Path:
    """Where a mask folder's volumes.json lives: beside ``masks/`` (in the set folder)."""
    gt_dir = Path(gt_dir)
    return (gt_dir.parent if gt_dir.name == "masks" else gt_dir) / VOLUMES_FILE


def read_volumes(path: str | Path) -> dict[str, Volume]:
    """The volumes of a volumes.json, checked; a DataError names the file, the volume and the key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                        f"rewrite it with decseg prepare") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it ({e}); check the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("volumes"), dict) or not data["volumes"]:
        raise DataError(f"{path}: expected {{\"format\": 1, \"volumes\": {{id: {{slices, axis, shape, "
                        f"spacing, ...}}}}}} with at least one volume")
    if data.get("format", 1) != 1:
        raise DataError(f"{path}: format {data.get('format')!r} is not supported (this decseg reads format 1)")
    out: dict[str, Volume] = {}
    owner: dict[str, str] = {}
    for vid, v in data["volumes"].items():
        where = f"{path}: volume {vid!r}"
        if not isinstance(v, dict):
            raise DataError(f"{where}: expected an object with slices, axis, shape and spacing")
        slices, axis, shape, spacing = v.get("slices"), v.get("axis"), v.get("shape"), v.get("spacing")
        if not isinstance(slices, list) or not slices or not all(isinstance(s, str) and s for s in slices):
            raise DataError(f"{where}: 'slices' must be a non-empty list of slice IDs")
        if not isinstance(shape, list) or len(shape) != 3 or not all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
            raise DataError(f"{where}: 'shape' must be three positive whole numbers, got {shape!r}")
        if not isinstance(axis, int) or isinstance(axis, bool) or not 0 <= axis < 3:
            raise DataError(f"{where}: 'axis' must be 0, 1 or 2, got {axis!r}")
        if not isinstance(spacing, list) or len(spacing) != 3 or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0
                for s in spacing):
            raise DataError(f"{where}: 'spacing' must be three positive numbers (mm per voxel, one per "
                            f"array axis), got {spacing!r}")
        if len(slices) != shape[axis]:
            raise DataError(f"{where}: lists {len(slices)} slices but its shape {shape} has {shape[axis]} "
                            f"along axis {axis}; every slice of a test volume must be kept")
        for s in slices:
            if s in owner:
                raise DataError(f"{where}: slice {s!r} is listed twice (also in volume {owner[s]!r})")
            owner[s] = vid
        out[vid] = Volume(str(vid), tuple(slices), axis, tuple(shape), tuple(float(s) for s in spacing))
    return out


def _slice_shape(volume: Volume) -> tuple[int, ...]:
    return tuple(n for i, n in enumerate(volume.shape) if i != volume.axis)


def _read_binary_pair(pred_path: str, gt_path: str) -> tuple[np.ndarray, np.ndarray]:
    gt_raw, _ = read_gt(gt_path)
    pred_raw, _ = read_prediction(pred_path)
    try:
        gt = gt_to_mask(gt_raw)
    except ValueError as e:
        raise DataError(f"{gt_path}: {e}; save masks as 8-bit greyscale PNG") from e
    return (im2double(pred_raw) >= 0.5).astype(np.uint8), gt.astype(np.uint8)


def _read_label_pair(pred_path: str, gt_path: str, classes: int, label_map: dict[int, int] | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    return read_prediction_labels(pred_path, classes), read_gt_labels(gt_path, classes, label_map)


def _score_volume(volume: Volume, pred_paths: list[str], gt_paths: list[str], classes: int,
                  spacing: tuple[float, ...] | None, label_map: dict[int, int] | None = None) -> CaseRecord:
    expected = _slice_shape(volume)
    preds, gts = [], []
    for sid, p, g in zip(volume.slices, pred_paths, gt_paths):
        pred, gt = _read_binary_pair(p, g) if classes == 2 else _read_label_pair(p, g, classes, label_map)
        if gt.shape != expected:
            raise DataError(f"{g}: slice {sid!r} of volume {volume.id!r} is {gt.shape[1]}x{gt.shape[0]} but the "
                            f"volume's shape {list(volume.shape)} (axis {volume.axis}) needs "
                            f"{expected[1]}x{expected[0]}; masks of volumes must not be resized")
        if pred.shape != gt.shape:
            raise DataError(f"{p}: prediction {pred.shape[1]}x{pred.shape[0]} for slice {sid!r} of volume "
                            f"{volume.id!r} differs in size from its GT ({gt.shape[1]}x{gt.shape[0]}); "
                            f"predict at the GT's size (decseg predict writes the original size)")
        preds.append(pred)
        gts.append(gt)
    pred_vol = np.stack(preds, axis=volume.axis)
    gt_vol = np.stack(gts, axis=volume.axis)
    return score_labels(pred_vol, gt_vol, classes, spacing, name=volume.id)


def evaluate_volume_folder(pred_dir: str | Path, gt_dir: str | Path, classes: int, names: list[str],
                           distance_unit: str = "mm", volumes_path: str | Path | None = None,
                           workers: int | None = None, label_map: dict[int, int] | None = None
                           ) -> dict[str, float | int | str]:
    """Per-volume numbers of a set with volumes.json: {per-class keys, [means], n_volumes, distance_unit}.

    ``names``: the K class names, background first. K = 2 gives the per-class keys of the
    foreground class only (no means: ``meanIoU`` is a toolbox key of binary sets).
    """
    if distance_unit not in DISTANCE_UNITS:
        raise DataError(f"distance unit {distance_unit!r}: choose one of {', '.join(DISTANCE_UNITS)}")
    gt_dir = Path(gt_dir)
    vpath = Path(volumes_path) if volumes_path is not None else volumes_file(gt_dir)
    if not vpath.is_file():
        raise DataError(f"{vpath} not found: per-volume metrics need the set's volumes.json "
                        f"(written by decseg prepare for volume sources); evaluate per image with --volumes off")
    volumes = read_volumes(vpath)
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder {pred_dir} does not exist")
    gts = index_by_stem(gt_dir, "GT files", strict=False) if gt_dir.is_dir() else {}
    preds = index_by_stem(pred_dir, "prediction files", strict=False)
    listed = {s for v in volumes.values() for s in v.slices}
    for v in volumes.values():
        for s in v.slices:
            if s not in gts:
                raise DataError(f"{gt_dir}: slice {s!r} of volume {v.id!r} (listed in {vpath}) has no mask "
                                f"file; restore it, or rebuild the set with decseg prepare")
            if s not in preds:
                raise DataError(f"{pred_dir}: no prediction for slice {s!r} of volume {v.id!r} ({s}.png); "
                                f"predict every slice of the set before evaluating")
    unmatched = sorted(preds[s].name for s in preds if s not in gts)
    extra = sorted(s for s in gts if s not in listed)
    if extra:
        raise DataError(f"{gts[extra[0]]}: not a slice of any volume in {vpath} ({len(extra)} such mask(s): "
                        f"{', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}); remove them, or "
                        f"evaluate per image with --volumes off")
    vols = list(volumes.values())
    records = parallel_map(
        _score_volume,
        [vols, [[str(preds[s]) for s in v.slices] for v in vols], [[str(gts[s]) for s in v.slices] for v in vols],
         [classes] * len(vols), [v.spacing if distance_unit == "mm" else None for v in vols],
         [label_map] * len(vols)],
        workers)
    out: dict[str, float | int | str] = dict(aggregate_classes(
        records, {c: names[c] for c in range(1, classes)}, count_key="n_volumes", means=classes > 2))
    out["distance_unit"] = distance_unit
    warn_unmatched(set_label(gt_dir), unmatched)
    return out
