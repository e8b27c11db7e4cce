"""Per-image evaluation, dataset aggregation, and folder/set drivers.

The per-image pipeline is the toolbox's: GT rule, MATLAB imresize of a mismatched
prediction, first channel / 255, mapminmax, then the measures. The dataset numbers are
plain means over images, with the threshold curves averaged first.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from decseg.errors import DataError
from decseg.files import IMAGE_EXTENSIONS, index_by_stem, is_image_name
from decseg.metrics import extras, measures
from decseg.metrics.matlab import im2double, imresize, mapminmax01
from decseg.metrics.readers import gt_to_mask, prediction_channel, read_gt, read_prediction

# The 13 numbers of the MATLAB toolbox, in its order.
TOOLBOX_KEYS = ("meanDic", "meanIoU", "wFm", "Sm", "meanEm", "MAE", "maxEm", "maxDice", "maxIoU",
                "meanSen", "maxSen", "meanSpe", "maxSpe")
EXTRA_KEYS = ("dice@0.5", "iou@0.5", "hd95", "hd95_undefined", "n_images", "n_empty_gt")
CURVES = ("dice", "iou", "sen", "spe", "em")


class EvaluationWarning(UserWarning):
    """Something the evaluator handled but the user should know (resizing, empty GT, ...)."""


@dataclass
class ImageRecord:
    """Everything the dataset aggregate needs from one image."""

    name: str
    curves: dict[str, np.ndarray]  # 256 values each, thresholds from 1 down to 0
    sm: float
    wfm: float
    mae: float
    dice_half: float
    iou_half: float
    hd95: float
    empty_gt: bool
    resized: bool
    warnings: list[str] = field(default_factory=list)


def evaluate_image(pred_array: np.ndarray, gt_array: np.ndarray, name: str = "image") -> ImageRecord:
    """Score one prediction map against one GT, both as ``imread`` returns them.

    ``pred_array``: HxW or HxWxC, uint8 / uint16 / bool (float taken as already in [0, 1]).
    ``gt_array``: HxW or HxWxC, uint8 / uint16 (foreground > 128, colour via rgb2gray) or bool.
    """
    gt = gt_to_mask(np.asarray(gt_array))
    pred = prediction_channel(np.asarray(pred_array))
    notes: list[str] = []
    resized = pred.shape != gt.shape
    if resized:
        notes.append(f"{name}: prediction {pred.shape[1]}x{pred.shape[0]} resized to the GT's "
                     f"{gt.shape[1]}x{gt.shape[0]} with MATLAB imresize (bicubic)")
        pred = imresize(pred, gt.shape)
    x = im2double(pred)
    y = mapminmax01(x)

    n, n_gt = gt.size, int(np.count_nonzero(gt))
    pn, tp = measures.threshold_counts(y, gt)
    curves = measures.count_curves(pn, tp, n_gt, n)
    curves["em"] = measures.e_measure_curve(pn, tp, n_gt, n)

    empty_gt = n_gt == 0
    if empty_gt and np.any(np.asarray(gt_array) != 0):
        notes.append(f"{name}: GT values are all <= 128, so the toolbox rule (> 128) reads it as "
                     f"empty; if it is a 0/1 label mask, save it as 0/255")
    wfm = 0.0 if empty_gt else measures.weighted_f(y, gt)  # the toolbox crashes on an empty GT
    sm = measures.s_measure(y, gt)
    if np.isnan(sm):
        notes.append(f"{name}: S-measure is NaN (the GT centroid lies on the last row or column, "
                     f"leaving an empty quadrant; the MATLAB toolbox gives NaN too)")

    binary = x >= 0.5
    dice_half, iou_half = extras.overlap_at_half(binary, gt)
    return ImageRecord(name=name, curves=curves, sm=sm, wfm=wfm, mae=measures.mae(y, gt),
                       dice_half=dice_half, iou_half=iou_half, hd95=extras.hd95(binary, gt),
                       empty_gt=empty_gt, resized=resized, warnings=notes)


def aggregate(records: list[ImageRecord]) -> dict[str, float]:
    """Dataset numbers: curves averaged over images, then meanX (NaN propagates) and maxX (NaN ignored)."""
    if not records:
        raise ValueError("aggregate: no images")
    out: dict[str, float] = {}
    curve = {k: np.mean(np.stack([r.curves[k] for r in records]), axis=0) for k in CURVES}

    def nanmax(c: np.ndarray) -> float:
        return float("nan") if np.all(np.isnan(c)) else float(np.nanmax(c))

    out["meanDic"] = float(np.mean(curve["dice"]))
    out["meanIoU"] = float(np.mean(curve["iou"]))
    out["wFm"] = float(np.mean([r.wfm for r in records]))
    out["Sm"] = float(np.mean([r.sm for r in records]))
    out["meanEm"] = float(np.mean(curve["em"]))
    out["MAE"] = float(np.mean([r.mae for r in records]))
    out["maxEm"] = nanmax(curve["em"])
    out["maxDice"] = nanmax(curve["dice"])
    out["maxIoU"] = nanmax(curve["iou"])
    out["meanSen"] = float(np.mean(curve["sen"]))
    out["maxSen"] = nanmax(curve["sen"])
    out["meanSpe"] = float(np.mean(curve["spe"]))
    out["maxSpe"] = nanmax(curve["spe"])
    out["dice@0.5"] = float(np.mean([r.dice_half for r in records]))
    out["iou@0.5"] = float(np.mean([r.iou_half for r in records]))
    hd = np.array([r.hd95 for r in records])
    defined = ~np.isnan(hd)
    out["hd95"] = float(np.mean(hd[defined])) if defined.any() else float("nan")
    out["hd95_undefined"] = int(np.count_nonzero(~defined))
    out["n_images"] = len(records)
    out["n_empty_gt"] = int(sum(r.empty_gt for r in records))
    return out


def binary_mean_dice(pred_bool: np.ndarray, gt_bool: np.ndarray) -> float:
    """The toolbox's meanDic for one binary (0/255) prediction of the GT's size.

    A binary map is 0/1 after mapminmax (or constant and unchanged), so it is foreground
    at every threshold but the last (t = 0), where everything is. The curve is built
    from those counts with the same code as the full pipeline.
    """
    pred = np.asarray(pred_bool, dtype=bool)
    gt = np.asarray(gt_bool, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"binary_mean_dice: prediction {pred.shape} and GT {gt.shape} differ in size")
    n, n_gt = gt.size, int(np.count_nonzero(gt))
    positive = measures.THRESHOLDS > 0
    pn = np.where(positive, np.count_nonzero(pred), n)
    tp = np.where(positive, np.count_nonzero(pred & gt), n_gt)
    dice = measures.count_curves(pn, tp, n_gt, n)["dice"]
    # Same reduction as aggregate() over one image.
    return float(np.mean(np.mean(dice[None, :], axis=0)))


# ----------------------------------------------------------------------------- files
def _evaluate_files(pred_path: str, gt_path: str) -> ImageRecord:
    pred, pred_notes = read_prediction(pred_path)
    gt, gt_notes = read_gt(gt_path)
    try:
        record = evaluate_image(pred, gt, name=Path(pred_path).name)
    except ValueError as e:  # shapes or classes the toolbox cannot read either
        raise DataError(f"{pred_path} vs {gt_path}: {e}; save both as 8-bit greyscale PNG") from e
    record.warnings = gt_notes + pred_notes + record.warnings
    return record


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _summarise_warnings(label: str, records: list[ImageRecord], unmatched: list[str]) -> None:
    resized = [r.name for r in records if r.resized]
    if resized:
        shown = ", ".join(resized[:5]) + (f" and {len(resized) - 5} more" if len(resized) > 5 else "")
        warnings.warn(f"{label}: {len(resized)} prediction(s) differ in size from their GT and were "
                      f"resized with MATLAB imresize (bicubic): {shown}", EvaluationWarning, stacklevel=3)
    empty = [r.name for r in records if r.empty_gt]
    if empty:
        warnings.warn(f"{label}: {len(empty)} image(s) have an empty GT (the MATLAB toolbox crashes "
                      f"on them); their wFm counts as 0: {', '.join(empty[:5])}"
                      + (" ..." if len(empty) > 5 else ""), EvaluationWarning, stacklevel=3)
    for r in records:
        for note in r.warnings:
            if "resized to the GT" not in note:
                warnings.warn(f"{label}: {note}", EvaluationWarning, stacklevel=3)
    if unmatched:
        warnings.warn(f"{label}: {len(unmatched)} prediction(s) have no GT and were ignored: "
                      f"{', '.join(unmatched[:5])}" + (" ..." if len(unmatched) > 5 else ""),
                      EvaluationWarning, stacklevel=3)


def evaluate_records(pred_dir: str | Path, gt_dir: str | Path, workers: int | None = None) -> list[ImageRecord]:
    """Per-image records for every GT file in ``gt_dir``, in name order."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not gt_dir.is_dir():
        raise DataError(f"GT folder {gt_dir} does not exist")
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder {pred_dir} does not exist")
    # Other files (a README, a .mat) are passed over.
    gts = index_by_stem(gt_dir, "GT files", strict=False)
    if not gts:
        raise DataError(f"GT folder {gt_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    preds = index_by_stem(pred_dir, "prediction files", strict=False)
    missing = [s for s in gts if s not in preds]
    if missing:
        names = ", ".join(f"{s}.png" for s in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{pred_dir}: {len(missing)} prediction(s) missing for GT files in {gt_dir}: "
                        f"{names}; predict every test image before evaluating")
    pairs = [(str(preds[s]), str(gts[s])) for s in gts]
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(pairs) < 8:  # starting processes costs more than a few images
        records = [_evaluate_files(p, g) for p, g in pairs]
    else:
        # spawn: safe even when the caller has torch threads running; results keep input order.
        with ProcessPoolExecutor(max_workers=min(workers, len(pairs)), mp_context=get_context("spawn")) as ex:
            chunk = max(1, len(pairs) // (4 * workers))
            records = list(ex.map(_evaluate_files, *zip(*pairs), chunksize=chunk))
    unmatched = sorted(preds[s].name for s in preds if s not in gts)
    _summarise_warnings(gt_dir.parent.name if gt_dir.name == "masks" else gt_dir.name, records, unmatched)
    return records


def evaluate_folder(pred_dir: str | Path, gt_dir: str | Path, workers: int | None = None) -> dict[str, float]:
    """The toolbox's 13 numbers plus extras for one set: predictions ``pred_dir/ID.png``, GT ``gt_dir/ID.*``."""
    return aggregate(evaluate_records(pred_dir, gt_dir, workers))


def find_sets(pred_root: str | Path, gt_root: str | Path) -> dict[str, tuple[Path, Path]]:
    """{set name: (prediction folder, mask folder)} for a single set or a folder of sets.

    ``gt_root`` is a folder of masks (the set is named after it, or after its parent if it
    is called ``masks``), a set folder with ``masks/`` inside, or a folder of such sets.
    Predictions for set NAME are ``pred_root/NAME`` if that exists, else ``pred_root`` for
    a single set.
    """
    pred_root, gt_root = Path(pred_root), Path(gt_root)
    if not gt_root.is_dir():
        raise DataError(f"GT folder {gt_root} does not exist")

    def has_images(d: Path) -> bool:
        return any(p.is_file() and is_image_name(p) for p in d.iterdir())

    if has_images(gt_root) or (gt_root / "masks").is_dir():
        mask_dir = gt_root if has_images(gt_root) else gt_root / "masks"
        name = gt_root.parent.name if gt_root.name == "masks" else gt_root.name
        pred_dir = pred_root / name if (pred_root / name).is_dir() else pred_root
        return {name: (pred_dir, mask_dir)}
    sets = {}
    for d in sorted(p for p in gt_root.iterdir() if p.is_dir()):
        if (d / "masks").is_dir():
            sets[d.name] = (pred_root / d.name, d / "masks")
    if not sets:
        raise DataError(f"{gt_root} holds neither mask images nor set folders with masks/ inside; "
                        f"pass a folder of masks or e.g. DATA/test")
    for name, (pred_dir, _) in sets.items():
        if not pred_dir.is_dir():
            raise DataError(f"predictions for set {name!r} not found: {pred_dir} does not exist; "
                            f"run predict for it or pass --gt {gt_root / name}")
    return sets


def evaluate_sets(pred_root: str | Path, gt_root: str | Path, workers: int | None = None) -> dict[str, dict[str, float]]:
    """{set name: evaluate_folder(...)} for every set found by :func:`find_sets`."""
    return {name: evaluate_folder(p, g, workers) for name, (p, g) in find_sets(pred_root, gt_root).items()}
