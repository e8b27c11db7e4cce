"""Per-image evaluation, dataset aggregation, and folder/set drivers.

The per-image pipeline is the toolbox's: GT rule, MATLAB imresize of a mismatched
prediction, first channel / 255, mapminmax, then the measures. The dataset numbers are
plain means over images, with the threshold curves averaged first.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from decseg.config import yaml_load, yaml_problem
from decseg.errors import DataError
from decseg.labels import check_class_names, check_label_map, class_names
from decseg.files import is_image_name
from decseg.metrics import extras, measures
from decseg.metrics.folders import EvaluationWarning, matched_files, parallel_map, set_label
from decseg.metrics.matlab import im2double, imresize, mapminmax01
from decseg.metrics.multiclass import evaluate_label_folder
from decseg.metrics.readers import gt_to_mask, prediction_channel, read_gt, read_prediction
from decseg.metrics.volumes import DISTANCE_UNITS, evaluate_volume_folder, volumes_file

# The 13 numbers of the MATLAB toolbox, in its order.
TOOLBOX_KEYS = ("meanDic", "meanIoU", "wFm", "Sm", "meanEm", "MAE", "maxEm", "maxDice", "maxIoU",
                "meanSen", "maxSen", "meanSpe", "maxSpe")
EXTRA_KEYS = ("dice@0.5", "iou@0.5", "hd95", "hd95_medpy", "hd95_undefined", "n_images", "n_empty_gt")
CURVES = ("dice", "iou", "sen", "spe", "em")


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
    hd95_medpy: float = float("nan")  # medpy's HD95 (pooled percentile); NaN where hd95 is


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
                       empty_gt=empty_gt, resized=resized, warnings=notes,
                       hd95_medpy=extras.hd95_medpy(binary, gt))


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
    hd_medpy = np.array([r.hd95_medpy for r in records])[defined]
    out["hd95_medpy"] = float(np.mean(hd_medpy)) if defined.any() else float("nan")
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
    gt_dir = Path(gt_dir)
    gts, preds, unmatched = matched_files(pred_dir, gt_dir)
    records = parallel_map(_evaluate_files, [[str(preds[s]) for s in gts], [str(gts[s]) for s in gts]], workers)
    _summarise_warnings(set_label(gt_dir), records, unmatched)
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


VOLUME_MODES = ("auto", "on", "off")


def dataset_classes(gt_root: str | Path) -> tuple[int, list[str], Path | None]:
    """(K, the K class names, the dataset.yaml read) from the nearest dataset.yaml in the three
    folders above ``gt_root`` (DATA/test, DATA/test/SET, DATA/test/SET/masks); (2, ..., None) if none."""
    gt_root = Path(gt_root).resolve()
    for folder in list(gt_root.parents)[:3]:
        path = folder / "dataset.yaml"
        if not path.is_file():
            continue
        try:
            info = yaml_load(path.read_text())
        except yaml.YAMLError as e:
            raise DataError(f"{path}: {yaml_problem(e)}") from None
        if not isinstance(info, dict):
            raise DataError(f"{path}: expected a mapping with name, channels, classes, size")
        k = info.get("classes", 2)
        if not isinstance(k, int) or isinstance(k, bool) or k < 2:
            raise DataError(f"{path}: classes must be a whole number >= 2, got {k!r}; or pass --classes K")
        names = info.get("class_names")
        return k, (class_names(k) if names is None else check_class_names(names, k, str(path))), path
    return 2, class_names(2), None


def evaluate_set(pred_dir: str | Path, gt_dir: str | Path, classes: int = 2, names: list[str] | None = None,
                 volumes: str = "auto", distance_unit: str = "mm", workers: int | None = None,
                 label_map: dict[int, int] | None = None) -> dict:
    """The numbers of one set.

    K = 2: the 13 toolbox keys and the extras, per image; plus, in volume mode, the per-volume
    keys of the foreground class (``Dice/<name>`` ..., ``n_volumes``). K > 2: per class
    ``Dice/<name>``, ``IoU/<name>``, ``HD95/<name>``, ``HD95_medpy/<name>``, ``ASD/<name>``, their
    means over the foreground classes (``meanDice``, ``meanIoU``, ``HD95``, ``HD95_medpy``,
    ``ASD``), and ``n_images`` (per image, in pixels) or ``n_volumes`` (volume mode).
    ``volumes``: "auto" (volume mode when the set has volumes.json), "on" or "off".
    ``distance_unit`` (volume mode): "mm" (the volumes' spacing) or "voxel" (no spacing).
    ``label_map`` (K > 2): raw GT mask value -> class, for GT masks that code classes otherwise.
    """
    if volumes not in VOLUME_MODES:
        raise DataError(f"volume mode {volumes!r}: choose one of {', '.join(VOLUME_MODES)}")
    if distance_unit not in DISTANCE_UNITS:
        raise DataError(f"distance unit {distance_unit!r}: choose one of {', '.join(DISTANCE_UNITS)}")
    if classes < 2:
        raise DataError(f"--classes {classes}: a dataset has at least 2 classes (background and one more)")
    names = class_names(classes) if names is None else list(names)
    if len(names) != classes:
        raise DataError(f"{len(names)} class names given for {classes} classes ({names}); give one per class, "
                        f"background first")
    vfile = volumes_file(gt_dir)
    if volumes == "on" and not vfile.is_file():
        raise DataError(f"--volumes on: {vfile} not found; per-volume metrics need the set's volumes.json "
                        f"(written by decseg prepare for volume sources)")
    by_volume = volumes == "on" or (volumes == "auto" and vfile.is_file())
    if classes == 2:
        # The volume check first: its errors name the volume of a missing slice.
        per_volume = (evaluate_volume_folder(pred_dir, gt_dir, classes, names, distance_unit, vfile, workers)
                      if by_volume else {})
        return {**evaluate_folder(pred_dir, gt_dir, workers), **per_volume}
    if label_map is not None:
        label_map = check_label_map(label_map, classes, "--label-map")
    if by_volume:
        return evaluate_volume_folder(pred_dir, gt_dir, classes, names, distance_unit, vfile, workers, label_map)
    return evaluate_label_folder(pred_dir, gt_dir, classes, names, workers, label_map)


def evaluate_sets(pred_root: str | Path, gt_root: str | Path, workers: int | None = None,
                  classes: int | None = None, volumes: str = "auto", distance_unit: str = "mm",
                  label_map: dict[int, int] | None = None) -> dict[str, dict[str, float]]:
    """{set name: evaluate_set(...)} for every set found by :func:`find_sets`.

    ``classes`` None: from the dataset.yaml above ``gt_root`` (see :func:`dataset_classes`), else 2.
    """
    k, names, _ = dataset_classes(gt_root)
    if classes is not None and classes != k:
        k, names = classes, class_names(classes)
    return {name: evaluate_set(p, g, k, names, volumes, distance_unit, workers, label_map)
            for name, (p, g) in find_sets(pred_root, gt_root).items()}
