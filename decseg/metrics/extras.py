"""Measures outside the MATLAB toolbox: Dice/IoU of the map binarised at 0.5, and HD95.

These read the prediction before min-max normalisation (``y_raw`` = first channel / 255),
so a 0/255 prediction gives the same binary mask the network produced.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def overlap_at_half(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(Dice, IoU) of two boolean masks with explicit empty cases.

    Both empty is a perfect answer (1.0, 1.0), as MONAI's ``ignore_empty=False`` treats
    it; exactly one empty scores 0.
    """
    inter = int(np.count_nonzero(pred & gt))
    n_pred = int(np.count_nonzero(pred))
    n_gt = int(np.count_nonzero(gt))
    if n_pred == 0 and n_gt == 0:
        return 1.0, 1.0
    return 2.0 * inter / (n_pred + n_gt), inter / (n_pred + n_gt - inter)


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask with a 4-neighbour outside it (mask minus its erosion)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(pred: np.ndarray, gt: np.ndarray) -> float:
    """Symmetric 95th-percentile Hausdorff distance in pixels between the two boundaries.

    As MONAI's ``compute_hausdorff_distance(percentile=95)``: the 95th percentile
    (linear interpolation) of each directed set of boundary-to-boundary Euclidean
    distances, then the larger of the two. Both masks empty: 0. Exactly one empty:
    NaN (undefined; the dataset mean skips it and counts it).
    """
    has_pred, has_gt = bool(pred.any()), bool(gt.any())
    if not has_pred and not has_gt:
        return 0.0
    if has_pred != has_gt:
        return float("nan")
    bp, bg = _boundary(pred), _boundary(gt)
    # Crop to the box holding both boundaries: every source and target pixel is inside it,
    # so the distances are the same and the transforms cost far less on large images.
    rows = np.flatnonzero((bp | bg).any(axis=1))
    cols = np.flatnonzero((bp | bg).any(axis=0))
    box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    bp, bg = bp[box], bg[box]
    to_gt = ndimage.distance_transform_edt(~bg)  # distance of every pixel to the GT boundary
    to_pred = ndimage.distance_transform_edt(~bp)
    return float(max(np.percentile(to_gt[bp], 95), np.percentile(to_pred[bg], 95)))
