"""Per-class Dice, IoU, the two HD95s and ASD of class-index maps, and their set aggregates.

A *case* is one image (2D sets) or one volume (sets with volumes.json). Each foreground class
1..K-1 of a case is scored as a binary mask pair with :func:`decseg.metrics.surface.case_metrics`
(the empty-mask rules are there). A set's number for a class is the mean over its cases; HD95,
HD95_medpy and ASD leave out the cases where they are undefined (the class in exactly one of
prediction and GT) and count them in ``HD95_undefined/<name>``. The set's ``meanDice``,
``meanIoU``, ``HD95``, ``HD95_medpy`` and ``ASD`` are the means of those per-class numbers over
the foreground classes (NaN when a class has no defined value), as ACDC tables average over
cases per class, then over classes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from decseg.errors import DataError
from decseg.labels import read_label, read_raw_label, to_indices
from decseg.metrics.folders import matched_files, parallel_map, set_label, warn_unmatched
from decseg.metrics.surface import CASE_KEYS, Spacing, case_metrics

# Set-level keys of a K-class set (means over the foreground classes), in table order.
MEAN_KEYS = {"Dice": "meanDice", "IoU": "meanIoU", "HD95": "HD95", "HD95_medpy": "HD95_medpy", "ASD": "ASD"}
DISTANCE_KEYS = ("HD95", "HD95_medpy", "ASD")


@dataclass
class CaseRecord:
    """The scores of one case: per foreground class index, {CASE_KEYS: value}."""

    name: str
    scores: dict[int, dict[str, float]]
    empty_gt: dict[int, bool]
    warnings: list[str] = field(default_factory=list)


def score_labels(pred: np.ndarray, gt: np.ndarray, classes: int, spacing: Spacing = None,
                 name: str = "case", foreground: Sequence[int] | None = None) -> CaseRecord:
    """Score class-index arrays (2D or 3D, same shape) for each foreground class.

    ``foreground``: the class indices to score (default 1..K-1).
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"{name}: prediction {pred.shape} and GT {gt.shape} differ in shape")
    scores, empty_gt = {}, {}
    for c in (range(1, classes) if foreground is None else foreground):
        p, g = pred == c, gt == c
        scores[c] = case_metrics(p, g, spacing)
        empty_gt[c] = not bool(g.any())
    return CaseRecord(name=name, scores=scores, empty_gt=empty_gt)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def aggregate_classes(records: list[CaseRecord], names: dict[int, str], count_key: str = "n_images",
                      means: bool = True) -> dict[str, float | int]:
    """Set numbers: per class ``Dice/<name>`` ... means over cases, then (``means``) the
    means over classes ``meanDice``, ``meanIoU``, ``HD95``, ``HD95_medpy``, ``ASD``; and counts.

    ``names``: {class index: name} of the foreground classes to report.
    """
    if not records:
        raise ValueError("aggregate_classes: no cases")
    per_class: dict[str, float | int] = {}
    by_metric: dict[str, list[float]] = {k: [] for k in CASE_KEYS}
    for c, n in names.items():
        for key in CASE_KEYS:
            values = [r.scores[c][key] for r in records]
            if key in DISTANCE_KEYS:
                values = [v for v in values if not math.isnan(v)]
            per_class[f"{key}/{n}"] = _mean(values)
            by_metric[key].append(per_class[f"{key}/{n}"])
        per_class[f"HD95_undefined/{n}"] = int(sum(math.isnan(r.scores[c]["HD95"]) for r in records))
        per_class[f"n_empty_gt/{n}"] = int(sum(r.empty_gt[c] for r in records))
    out: dict[str, float | int] = {}
    if means:
        for key, mean_key in MEAN_KEYS.items():
            # NaN propagates: a class with no defined distance leaves the mean undefined.
            out[mean_key] = float(np.mean(by_metric[key]))
    out.update(per_class)
    out[count_key] = len(records)
    return out


def read_gt_labels(path: str | Path, classes: int, label_map: dict[int, int] | None = None) -> np.ndarray:
    """A K-class GT mask as class indices (``label_map``: raw value -> class, for masks coded otherwise)."""
    return read_label(path, classes, label_map)


def read_prediction_labels(path: str | Path, classes: int) -> np.ndarray:
    """A K-class prediction as class indices; a value outside 0..K-1 is a DataError naming the file."""
    arr = read_raw_label(path)
    if arr.ndim == 2 and arr.dtype.kind in "ui":
        bad = np.unique(arr[arr >= classes])
        if bad.size:
            shown = ", ".join(str(v) for v in bad[:8].tolist()) + (" ..." if bad.size > 8 else "")
            raise DataError(f"{path}: prediction values {shown} are outside the class indices 0..{classes - 1}; "
                            f"a {classes}-class prediction holds class indices (as decseg predict writes "
                            f"them) - check --classes and that the predictions are of this dataset")
    return to_indices(arr, classes, None, path)


def _score_files(pred_path: str, gt_path: str, classes: int, label_map: dict[int, int] | None = None) -> CaseRecord:
    gt = read_gt_labels(gt_path, classes, label_map)
    pred = read_prediction_labels(pred_path, classes)
    if pred.shape != gt.shape:
        raise DataError(f"{pred_path}: prediction {pred.shape[1]}x{pred.shape[0]} differs in size from "
                        f"the GT {gt_path} ({gt.shape[1]}x{gt.shape[0]}); class maps are not resized - "
                        f"predict at the GT's size (decseg predict writes the original size)")
    return score_labels(pred, gt, classes, None, name=Path(pred_path).name)


def evaluate_label_folder(pred_dir: str | Path, gt_dir: str | Path, classes: int, names: list[str],
                          workers: int | None = None, label_map: dict[int, int] | None = None
                          ) -> dict[str, float | int | str]:
    """The numbers of a K-class 2D set: every image scored in pixels, then aggregated.

    ``names``: the K class names, background first. ``label_map``: raw GT value -> class.
    """
    gt_dir = Path(gt_dir)
    gts, preds, unmatched = matched_files(pred_dir, gt_dir)
    records = parallel_map(_score_files, [[str(preds[s]) for s in gts], [str(gts[s]) for s in gts],
                                          [classes] * len(gts), [label_map] * len(gts)], workers)
    out: dict[str, float | int | str] = dict(aggregate_classes(records, {c: names[c] for c in range(1, classes)}))
    out["distance_unit"] = "pixel"
    warn_unmatched(set_label(gt_dir), unmatched)
    return out
