"""Measures outside the MATLAB toolbox: Dice/IoU of the map binarised at 0.5, and the two HD95s.

These read the prediction before min-max normalisation (``y_raw`` = first channel / 255),
so a 0/255 prediction gives the same binary mask the network produced.
"""
from __future__ import annotations

import numpy as np

from decseg.metrics import surface


def overlap_at_half(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(Dice, IoU) of two boolean masks with explicit empty cases.

    Both empty is a perfect answer (1.0, 1.0), as MONAI's ``ignore_empty=False`` and medpy's
    ``dc`` treat it; exactly one empty scores 0.
    """
    return surface.overlap(pred, gt)


def hd95(pred: np.ndarray, gt: np.ndarray) -> float:
    """Symmetric 95th-percentile Hausdorff distance in pixels between the two boundaries.

    As MONAI's ``compute_hausdorff_distance(percentile=95)``: the 95th percentile
    (linear interpolation) of each directed set of boundary-to-boundary Euclidean
    distances, then the larger of the two. Both masks empty: 0. Exactly one empty:
    NaN (undefined; the dataset mean skips it and counts it).
    """
    return surface.hd95_monai(pred, gt)


def hd95_medpy(pred: np.ndarray, gt: np.ndarray) -> float:
    """medpy's 95th-percentile Hausdorff distance in pixels (both directed sets pooled), with
    the same empty rules as :func:`hd95`."""
    return surface.hd95_medpy(pred, gt)
