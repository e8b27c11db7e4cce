"""Overlap and surface-distance measures of two boolean masks, 2D or 3D, with explicit empty cases.

Two 95th-percentile Hausdorff distances are in use and they differ (by several pixels on
irregular masks):

- ``hd95_monai``: MONAI's ``compute_hausdorff_distance(percentile=95)``: the 95th percentile of
  each directed set of boundary distances, then the larger of the two;
- ``hd95_medpy``: medpy's ``metric.binary.hd95``: the 95th percentile of both directed sets
  pooled (what ACDC tables report).

Both libraries define a boundary the same way: the mask minus its binary erosion with the
connectivity-1 structure (4-neighbours in 2D, 6 in 3D), pixels outside the array counting as
background. Distances are Euclidean, scaled by ``spacing`` per array axis (None: 1 per axis).

Empty cases (medpy raises and MONAI returns NaN/inf with a warning, so we define them):

- Dice and IoU: both masks empty -> 1 (medpy's ``dc`` rule: a correct "nothing here");
  exactly one empty -> 0.
- HD95 (both definitions) and ASD: both empty -> 0; exactly one empty -> NaN (undefined; the
  aggregates leave it out and count it).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

Spacing = Sequence[float] | None

# Keys of :func:`case_metrics`, in table order.
CASE_KEYS = ("Dice", "IoU", "HD95", "HD95_medpy", "ASD")


def _spacing(spacing: Spacing, ndim: int) -> np.ndarray | None:
    if spacing is None:
        return None
    s = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if s.size != ndim or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"spacing {list(s)} must hold {ndim} positive numbers, one per array axis")
    return s


def boundary(mask: np.ndarray) -> np.ndarray:
    """The mask minus its erosion by the connectivity-1 structure (medpy's and MONAI's boundary)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _union_box(pred: np.ndarray, gt: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of pred | gt. Cropping to it changes no boundary (outside it and outside
    the array are both background) and no distance (every boundary pixel lies inside it)."""
    union = pred | gt
    box = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        idx = np.flatnonzero(union.any(axis=other))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)


def overlap(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(Dice, IoU) of two boolean masks; both empty -> (1, 1), exactly one empty -> (0, 0)."""
    inter = int(np.count_nonzero(pred & gt))
    n_pred, n_gt = int(np.count_nonzero(pred)), int(np.count_nonzero(gt))
    if n_pred == 0 and n_gt == 0:
        return 1.0, 1.0
    return 2.0 * inter / (n_pred + n_gt), inter / (n_pred + n_gt - inter)


def directed_distances(pred: np.ndarray, gt: np.ndarray, spacing: Spacing = None) -> tuple[np.ndarray, np.ndarray]:
    """(distances from each pred boundary pixel to the GT boundary, and from each GT boundary
    pixel to the pred boundary), Euclidean with ``spacing``. Both masks must be non-empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    sampling = _spacing(spacing, pred.ndim)
    box = _union_box(pred, gt)
    bp, bg = boundary(pred[box]), boundary(gt[box])
    to_gt = ndimage.distance_transform_edt(~bg, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~bp, sampling=sampling)
    return to_gt[bp], to_pred[bg]


def _empty_rule(pred: np.ndarray, gt: np.ndarray) -> float | None:
    """0 when both are empty, NaN when exactly one is, None when the distance is defined."""
    has_pred, has_gt = bool(pred.any()), bool(gt.any())
    if not has_pred and not has_gt:
        return 0.0
    if has_pred != has_gt:
        return float("nan")
    return None


def _check(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and GT {gt.shape} differ in shape")
    return pred, gt


def hd95_monai(pred: np.ndarray, gt: np.ndarray, spacing: Spacing = None) -> float:
    """MONAI's HD95: max of the two directed 95th percentiles (linear interpolation).

    Written here rather than imported because importing MONAI costs about 6 s; the tests
    check it against ``monai.metrics.compute_hausdorff_distance``.
    """
    pred, gt = _check(pred, gt)
    empty = _empty_rule(pred, gt)
    if empty is not None:
        return empty
    a, b = directed_distances(pred, gt, spacing)
    return float(max(np.percentile(a, 95), np.percentile(b, 95)))


def _medpy_distance(distance: Callable[..., float], pred: np.ndarray, gt: np.ndarray,
                    spacing: Spacing) -> float:
    """A medpy surface distance with decseg's empty-mask rule, on the box around both masks
    (the same value, computed faster), with the 4/6-neighbour boundary both libraries use."""
    pred, gt = _check(pred, gt)
    empty = _empty_rule(pred, gt)
    if empty is not None:
        return empty
    box = _union_box(pred, gt)
    return float(distance(pred[box], gt[box], voxelspacing=_spacing(spacing, pred.ndim), connectivity=1))


def hd95_medpy(pred: np.ndarray, gt: np.ndarray, spacing: Spacing = None) -> float:
    """medpy's HD95 (``medpy.metric.binary.hd95``: the 95th percentile of both directed sets pooled)."""
    from medpy.metric.binary import hd95  # scipy.stats comes with it: 0.6 s, paid only when used

    return _medpy_distance(hd95, pred, gt, spacing)


def asd(pred: np.ndarray, gt: np.ndarray, spacing: Spacing = None) -> float:
    """medpy's ASD (``medpy.metric.binary.asd``): mean distance from the prediction's boundary
    pixels to the GT's boundary (directed, as MONAI's ``compute_average_surface_distance``
    with ``symmetric=False``)."""
    from medpy.metric.binary import asd as medpy_asd

    return _medpy_distance(medpy_asd, pred, gt, spacing)


def case_metrics(pred: np.ndarray, gt: np.ndarray, spacing: Spacing = None) -> dict[str, float]:
    """{Dice, IoU, HD95 (MONAI's), HD95_medpy, ASD} of one case (an image or a volume)."""
    pred, gt = _check(pred, gt)
    dice, iou = overlap(pred, gt)
    return {"Dice": dice, "IoU": iou, "HD95": hd95_monai(pred, gt, spacing),
            "HD95_medpy": hd95_medpy(pred, gt, spacing), "ASD": asd(pred, gt, spacing)}
