"""The toolbox's per-image measures on a normalised map ``y`` (float64, [0, 1]) and a boolean GT.

Formulas follow docs/EVALUATION.md term by term, in the toolbox's order of operations, so
that results agree with MATLAB to rounding. pysodmetrics is not used here: its thresholds,
centroid rounding and specificity conventions differ, and importing it pulls in OpenCV.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from decseg.metrics.matlab import EPS, round_half_away, toolbox_thresholds

THRESHOLDS = toolbox_thresholds()


# ----------------------------------------------------------------------------- MAE
def mae(y: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error between the map and the 0/1 GT."""
    return float(np.mean(np.abs(gt.astype(np.float64) - y)))


# ----------------------------------------------------------------------------- S-measure
def _object_score(v: np.ndarray) -> float:
    """O(v) = 2m / (m^2 + 1 + sd + eps), sd the N-1 standard deviation (0 for one pixel)."""
    if v.size == 0:
        return 0.0
    m = np.mean(v)
    sd = np.std(v, ddof=1) if v.size > 1 else 0.0
    return float(2.0 * m / (m ** 2 + 1.0 + sd + EPS))


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """The region term's SSIM-like score, variances over (N - 1 + eps).

    An empty quadrant gives NaN as in MATLAB (mean of nothing), which then makes the
    whole S-measure NaN even though its weight is 0: MATLAB's 0 * NaN is NaN too.
    """
    dgt = gt.astype(np.float64)
    n = pred.size
    if n == 0:
        return float("nan")
    x = np.mean(pred)
    y = np.mean(dgt)
    sigma_x2 = np.sum((pred - x) ** 2) / (n - 1 + EPS)
    sigma_y2 = np.sum((dgt - y) ** 2) / (n - 1 + EPS)
    sigma_xy = np.sum((pred - x) * (dgt - y)) / (n - 1 + EPS)
    a = 4 * x * y * sigma_xy
    b = (x ** 2 + y ** 2) * (sigma_x2 + sigma_y2)
    if a != 0:
        return float(a / (b + EPS))
    if b == 0:
        return 1.0
    return 0.0


def gt_centroid(gt: np.ndarray) -> tuple[int, int]:
    """1-based (X = column, Y = row) centroid of the FG, rounded half away from zero.

    pysodmetrics rounds the 0-based mean half to even and so is off by one for blobs
    whose mean lands on .5.
    """
    rows, cols = gt.shape
    total = int(np.count_nonzero(gt))
    if total == 0:
        return int(round_half_away(cols / 2)), int(round_half_away(rows / 2))
    col_sum = int(np.dot(gt.sum(axis=0, dtype=np.int64), np.arange(1, cols + 1)))
    row_sum = int(np.dot(gt.sum(axis=1, dtype=np.int64), np.arange(1, rows + 1)))
    return int(round_half_away(col_sum / total)), int(round_half_away(row_sum / total))


def _region_score(y: np.ndarray, gt: np.ndarray) -> float:
    X, Y = gt_centroid(gt)
    hei, wid = gt.shape
    area = wid * hei
    w1 = (X * Y) / area
    w2 = ((wid - X) * Y) / area
    w3 = (X * (hei - Y)) / area
    w4 = 1.0 - w1 - w2 - w3
    # MATLAB: LT = GT(1:Y, 1:X), RT = GT(1:Y, X+1:end), LB = GT(Y+1:end, 1:X), RB = rest.
    q1 = _ssim(y[:Y, :X], gt[:Y, :X])
    q2 = _ssim(y[:Y, X:], gt[:Y, X:])
    q3 = _ssim(y[Y:, :X], gt[Y:, :X])
    q4 = _ssim(y[Y:, X:], gt[Y:, X:])
    return w1 * q1 + w2 * q2 + w3 * q3 + w4 * q4


def s_measure(y: np.ndarray, gt: np.ndarray) -> float:
    """Structure measure (Fan et al. 2017) as the toolbox computes it, alpha = 0.5."""
    u = np.mean(gt)
    if u == 0:
        return float(1.0 - np.mean(y))
    if u == 1:
        return float(np.mean(y))
    o_fg = _object_score(y[gt])
    o_bg = _object_score((1.0 - y)[~gt])
    obj = u * o_fg + (1 - u) * o_bg
    q = 0.5 * obj + (1 - 0.5) * _region_score(y, gt)
    return float(0.0 if q < 0 else q)  # NaN passes through, as MATLAB's (Q < 0) is false


# ----------------------------------------------------------------------------- weighted F
def matlab_gaussian(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``: exp, tiny values zeroed, normalised."""
    half = (size - 1) / 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    h = np.exp(-(xx * xx + yy * yy) / (2 * sigma * sigma))
    h[h < EPS * h.max()] = 0
    return h / h.sum()


_GAUSS_7_5 = matlab_gaussian(7, 5.0)


def weighted_f(y: np.ndarray, gt: np.ndarray) -> float:
    """Weighted F-beta (Margolin et al. 2014), beta^2 = 1, as ``original_WFb``.

    The GT must have a foreground pixel (the toolbox crashes otherwise; the caller
    decides what an empty GT scores).
    """
    dgt = gt.astype(np.float64)
    e = np.abs(y - dgt)
    # Distance and nearest FG pixel for every BG pixel (bwdist(GT) with indices).
    dist, (ri, ci) = ndimage.distance_transform_edt(~gt, return_indices=True)
    et = e[ri, ci]  # FG pixels are their own nearest, so this only changes BG
    ea = ndimage.correlate(et, _GAUSS_7_5, mode="constant", cval=0.0)
    min_e_ea = e.copy()
    take = gt & (ea < e)
    min_e_ea[take] = ea[take]
    # bwdist returns single, so MATLAB evaluates the BG weights in single precision.
    d32 = dist.astype(np.float32)
    b_bg = np.float32(2) - np.float32(1) * np.exp(np.float32(np.log(1 - 0.5) / 5) * d32)
    b = np.where(gt, 1.0, b_bg.astype(np.float64))
    ew = min_e_ea * b
    tpw = np.sum(dgt) - np.sum(ew[gt])
    fpw = np.sum(ew[~gt])
    r = 1 - np.mean(ew[gt])
    p = tpw / (EPS + tpw + fpw)
    return float((1 + 1) * (r * p) / (EPS + r + 1 * p))


# ----------------------------------------------------------------------------- threshold curves
def threshold_counts(y: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Pn, TP) at each of the 256 toolbox thresholds, foreground at t being y >= t.

    Exact: sorted values and ``searchsorted`` compare each value with each threshold
    exactly (no binning of y).
    """
    all_sorted = np.sort(y, axis=None)
    fg_sorted = np.sort(y[gt], axis=None)
    pn = all_sorted.size - np.searchsorted(all_sorted, THRESHOLDS, side="left")
    tp = fg_sorted.size - np.searchsorted(fg_sorted, THRESHOLDS, side="left")
    return pn.astype(np.int64), tp.astype(np.int64)


def count_curves(pn: np.ndarray, tp: np.ndarray, n_gt: int, n: int) -> dict[str, np.ndarray]:
    """Dice, IoU, Sen, Spe per threshold from counts (``Fmeasure_calu``'s conventions).

    Where TP = 0 every score is 0, specificity included. Spe is NaN where TN + FP = 0
    (full GT) and TP > 0.
    """
    pn = np.asarray(pn, dtype=np.float64)
    tp = np.asarray(tp, dtype=np.float64)
    fn = n_gt - tp
    fp = pn - tp
    tn = (n - pn) - fn
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (fn + pn)
        sen = tp / n_gt
        spe = tn / (tn + fp)
        dice = 2 * tp / (n_gt + pn)
    zero = tp == 0
    for arr in (iou, sen, spe, dice):
        arr[zero] = 0.0
    return {"dice": dice, "iou": iou, "sen": sen, "spe": spe}


def _enhanced_value(f: float, g: float, mu_f: np.ndarray, mu_g: float) -> np.ndarray:
    """One entry of the enhanced alignment matrix for binary values (f, g), per threshold."""
    align_f = f - mu_f
    align_g = g - mu_g
    align = 2.0 * (align_g * align_f) / (align_g * align_g + align_f * align_f + EPS)
    return ((align + 1) ** 2) / 4


def e_measure_curve(pn: np.ndarray, tp: np.ndarray, n_gt: int, n: int) -> np.ndarray:
    """Enhanced-alignment measure per threshold, in closed form from the counts.

    The enhanced matrix only takes four values (one per (f, g) pair), so its sum is
    count * value over the four pairs; this equals the per-pixel sum up to summation order.
    """
    pn = np.asarray(pn, dtype=np.float64)
    tp = np.asarray(tp, dtype=np.float64)
    denom = n - 1 + EPS
    if n_gt == 0:  # enhanced = 1 - f
        return (n - pn) / denom
    if n_gt == n:  # enhanced = f
        return pn / denom
    fn = n_gt - tp
    fp = pn - tp
    tn = (n - pn) - fn
    mu_f = pn / n
    mu_g = n_gt / n
    total = (tp * _enhanced_value(1.0, 1.0, mu_f, mu_g) + fp * _enhanced_value(1.0, 0.0, mu_f, mu_g)
             + fn * _enhanced_value(0.0, 1.0, mu_f, mu_g) + tn * _enhanced_value(0.0, 0.0, mu_f, mu_g))
    return total / denom
