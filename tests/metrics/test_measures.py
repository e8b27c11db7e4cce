"""Hand-computed values of each per-image measure on tiny masks."""
import math

import numpy as np
import pytest

from decseg.metrics import measures as M
from decseg.metrics.matlab import EPS, toolbox_thresholds

T = toolbox_thresholds()


def e_measure_bruteforce(f: np.ndarray, gt: np.ndarray) -> float:
    """Per-pixel ``Enhancedmeasure`` of one binary map: the slow reference the fast path is checked against."""
    df = f.astype(np.float64)
    dg = gt.astype(np.float64)
    if dg.sum() == 0:
        enhanced = 1.0 - df
    elif (1 - dg).sum() == 0:
        enhanced = df
    else:
        af = df - df.mean()
        ag = dg - dg.mean()
        align = 2.0 * (ag * af) / (ag * ag + af * af + EPS)
        enhanced = ((align + 1) ** 2) / 4
    return float(enhanced.sum() / (gt.size - 1 + EPS))


def test_mae_by_hand():
    gt = np.array([[1, 0], [0, 0]], bool)
    y = np.array([[0.5, 0.25], [0.0, 1.0]])
    assert M.mae(y, gt) == pytest.approx((0.5 + 0.25 + 0 + 1) / 4, abs=1e-15)


def test_ssim_term_by_hand():
    # x = y = 0.5, variances over (N - 1 + eps) = 1 + eps: a = 0.3/(1+eps), b = 0.34/(1+eps).
    got = M._ssim(np.array([0.2, 0.8]), np.array([False, True]))
    assert got == pytest.approx((0.3 / (1 + EPS)) / (0.34 / (1 + EPS) + EPS), abs=1e-15)
    assert M._ssim(np.array([0.0, 0.0]), np.array([False, False])) == 1.0  # a = b = 0
    assert M._ssim(np.array([0.5, 0.0]), np.array([False, False])) == 0.0  # a = 0, b > 0
    assert math.isnan(M._ssim(np.zeros(0), np.zeros(0, bool)))


def test_s_measure_by_hand_with_half_centroid():
    gt = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool)
    y = np.array([[1.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # Centroid: mean column (1+2)/2 = 1.5 -> X = 2 (half away from zero); row Y = 1.
    assert M.gt_centroid(gt) == (2, 1)
    u = 2 / 8
    o_fg = 2 * 0.75 / (0.75 ** 2 + 1 + math.sqrt(0.125) + EPS)  # FG values [1, .5]
    bg = np.array([0.5, 1, 1, 1, 1, 1])  # 1 - y on BG
    sd = math.sqrt(((bg - bg.mean()) ** 2).sum() / 5)
    o_bg = 2 * bg.mean() / (bg.mean() ** 2 + 1 + sd + EPS)
    obj = u * o_fg + (1 - u) * o_bg
    # Quadrants (each weight 1/4): LT gt [1 1] pred [1 .5] -> 0; RT gt [0 0] pred [.5 0] -> 0;
    # LB and RB all zero -> 1 each. Region = 0.5.
    expected = 0.5 * obj + 0.5 * 0.5
    assert M.s_measure(y, gt) == pytest.approx(expected, abs=1e-14)
    # pysodmetrics rounds the 0-based mean 0.5 to even (0), i.e. X = 1, and scores differently.
    psm = pytest.importorskip("py_sod_metrics")
    assert abs(psm.Smeasure().cal_sm(y, gt) - expected) > 1e-3


def test_s_measure_special_cases():
    y = np.array([[0.2, 0.4], [0.6, 0.8]])
    assert M.s_measure(y, np.zeros((2, 2), bool)) == pytest.approx(1 - 0.5)
    assert M.s_measure(y, np.ones((2, 2), bool)) == pytest.approx(0.5)
    # Clipped below at 0: an inverted map scores 0.
    gt = np.zeros((6, 6), bool)
    gt[1:4, 1:4] = True
    assert M.s_measure((~gt).astype(float), gt) == 0.0
    # Centroid on the last row: empty quadrants make it NaN, as in MATLAB.
    gt_last = np.zeros((4, 4), bool)
    gt_last[3, 1:3] = True
    assert math.isnan(M.s_measure(np.full((4, 4), 0.3), gt_last))


def test_s_measure_agrees_with_pysodmetrics_when_centroid_is_not_half():
    psm = pytest.importorskip("py_sod_metrics")
    gt = np.zeros((20, 30), bool)
    gt[3:10, 4:21] = True  # mean row 7 (1-based), mean column 13
    y = np.random.default_rng(1).integers(0, 256, gt.shape) / 255
    assert M.s_measure(y, gt) == psm.Smeasure().cal_sm(y, gt)


def test_gaussian_is_fspecial():
    k = M.matlab_gaussian(7, 5.0)
    g = np.exp(-np.arange(-3, 4) ** 2 / 50)
    np.testing.assert_allclose(k, np.outer(g, g) / np.outer(g, g).sum(), rtol=0, atol=1e-17)
    assert k.sum() == pytest.approx(1.0, abs=1e-15)


def test_weighted_f_by_hand():
    gt = np.array([[True, False]])
    y = np.array([[0.5, 0.5]])
    # Et = [.5, .5] (BG takes its nearest FG error); only the kernel's middle row touches a 1-row
    # image, with zero padding: EA_0 = .5 * (g0 + g1) * g0 / S, g_i = exp(-i^2/50), S = (sum g)^2.
    g = [math.exp(-i * i / 50) for i in range(4)]
    s = (g[0] + 2 * (g[1] + g[2] + g[3])) ** 2
    ea0 = 0.5 * (g[0] + g[1]) * g[0] / s  # < .5, so it replaces E on the FG pixel
    b1 = 2 - 2 ** (-1 / 5)  # BG weight at distance 1
    r = 1 - ea0
    tpw = 1 - ea0
    fpw = 0.5 * b1
    p = tpw / (EPS + tpw + fpw)
    expected = 2 * r * p / (EPS + r + p)
    assert M.weighted_f(y, gt) == pytest.approx(expected, abs=1e-7)  # BG weights are single precision


def test_weighted_f_perfect_and_cross_check():
    gt = np.zeros((16, 16), bool)
    gt[4:10, 5:12] = True
    assert M.weighted_f(gt.astype(float), gt) == pytest.approx(1.0, abs=1e-12)
    psm = pytest.importorskip("py_sod_metrics")
    y = np.random.default_rng(2).integers(0, 256, gt.shape) / 255
    # pysodmetrics computes the BG weights in double; the difference is single-precision rounding.
    assert M.weighted_f(y, gt) == pytest.approx(psm.WeightedFmeasure().cal_wfm(y, gt), abs=1e-7)


def test_counts_and_curves_by_hand():
    gt = np.array([[True, True, False, False]])
    y = np.array([[255, 128, 200, 0]]) / 255
    pn, tp = M.threshold_counts(y, gt)
    c = M.count_curves(pn, tp, n_gt=2, n=4)
    # t = 1: only the 255 pixel. Pn 1, TP 1, FN 1, FP 0, TN 2.
    assert (pn[0], tp[0]) == (1, 1)
    assert (c["dice"][0], c["iou"][0], c["sen"][0], c["spe"][0]) == (2 / 3, 0.5, 0.5, 1.0)
    # t = 1 - 127/255 (just above 128/255's neighbourhood): 255, 200, 128 pass. Pn 3, TP 2, FP 1, TN 1.
    assert (pn[127], tp[127]) == (3, 2)
    assert (c["dice"][127], c["iou"][127], c["sen"][127], c["spe"][127]) == (0.8, 2 / 3, 1.0, 0.5)
    # t = 0: everything. Spe = 0/2.
    assert (pn[255], tp[255]) == (4, 2) and c["spe"][255] == 0.0 and c["dice"][255] == 4 / 6


def test_threshold_direction_is_greater_or_equal():
    gt = np.array([[True, False]])
    level = 200
    y = np.array([[level / 255, 0.0]])
    pn, _ = M.threshold_counts(y, gt)
    own = 255 - level  # index of the threshold for this grey level
    assert T[own] == level / 255 and pn[own] == 1  # equal passes
    assert pn[own - 1] == 0
    # 251/255 lies just below its own threshold, so it fails it.
    pn, _ = M.threshold_counts(np.array([[251 / 255, 0.0]]), gt)
    assert pn[4] == 0 and pn[5] == 1


def test_zero_tp_zeroes_everything_including_specificity():
    gt = np.array([[True, False, False, False]])
    y = np.array([[0.0, 1.0, 1.0, 0.0]])
    pn, tp = M.threshold_counts(y, gt)
    c = M.count_curves(pn, tp, 1, 4)
    assert tp[0] == 0 and pn[0] == 2
    assert (c["dice"][0], c["iou"][0], c["sen"][0], c["spe"][0]) == (0, 0, 0, 0)  # not TN/(TN+FP) = .5


def test_full_gt_specificity_is_nan_when_tp_positive():
    gt = np.ones((2, 2), bool)
    y = np.full((2, 2), 100 / 255)
    pn, tp = M.threshold_counts(y, gt)
    c = M.count_curves(pn, tp, 4, 4)
    above = T > 100 / 255
    assert np.all(c["spe"][above] == 0) and np.all(np.isnan(c["spe"][~above]))


def test_e_measure_by_hand():
    gt = np.array([[1, 0], [0, 0]], bool)
    f = np.array([[1, 1], [0, 0]], bool)
    # mu_f = .5, mu_g = .25. (1,1): align .75/.8125; (1,0): -.25/.3125 = -.8; (0,0): .25/.3125 = .8.
    e11 = (0.75 / 0.8125 + 1) ** 2 / 4
    expected = (e11 + 0.2 ** 2 / 4 + 2 * 1.8 ** 2 / 4) / 3
    assert e_measure_bruteforce(f, gt) == pytest.approx(expected, abs=1e-15)
    pn = np.array([2])
    tp = np.array([1])
    assert M.e_measure_curve(pn, tp, 1, 4)[0] == pytest.approx(expected, abs=1e-15)
    # Empty GT, empty prediction: 4 / 3 > 1.
    assert e_measure_bruteforce(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == pytest.approx(4 / 3)
    assert M.e_measure_curve(np.array([0]), np.array([0]), 0, 4)[0] == pytest.approx(4 / 3)
    # Full GT: enhanced = f.
    assert M.e_measure_curve(np.array([3]), np.array([3]), 4, 4)[0] == pytest.approx(3 / 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_e_measure_closed_form_equals_per_pixel(seed):
    rng = np.random.default_rng(seed)
    gt = np.zeros((30, 40), bool)
    gt[5:18, 8:30] = True
    y = rng.integers(0, 256, gt.shape) / 255
    pn, tp = M.threshold_counts(y, gt)
    fast = M.e_measure_curve(pn, tp, int(gt.sum()), gt.size)
    slow = np.array([e_measure_bruteforce(y >= t, gt) for t in T])
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    psm = pytest.importorskip("py_sod_metrics")
    em = psm.Emeasure()
    em.gt_fg_numel, em.gt_size = int(gt.sum()), gt.size
    assert em.cal_em_with_threshold(y, gt, 128 / 255) == pytest.approx(fast[127], abs=1e-12)


def _fmeasure_calu(y, gt, t):
    """Per-threshold transcription of the toolbox's Fmeasure_calu (boolean maps, no counting tricks)."""
    label = y >= t
    tp = np.count_nonzero(label & gt)
    num_rec = np.count_nonzero(label)
    fn = np.count_nonzero(gt) - tp
    fp = num_rec - tp
    tn = np.count_nonzero(~label) - fn
    if tp == 0:
        return 0.0, 0.0, 0.0, 0.0
    spe = tn / (tn + fp) if tn + fp else float("nan")
    return 2 * tp / (np.count_nonzero(gt) + num_rec), tp / (fn + num_rec), tp / np.count_nonzero(gt), spe


def test_vectorised_curves_equal_per_threshold_loop():
    rng = np.random.default_rng(4)
    gt = np.zeros((20, 25), bool)
    gt[4:12, 6:20] = True
    # Levels that sit on the awkward thresholds, after an exact 0..255 normalisation.
    y = rng.choice([0, 9, 128, 138, 139, 200, 251, 255], size=gt.shape) / 255
    pn, tp = M.threshold_counts(y, gt)
    c = M.count_curves(pn, tp, int(gt.sum()), gt.size)
    loop = np.array([_fmeasure_calu(y, gt, t) for t in T])
    np.testing.assert_array_equal(np.stack([c["dice"], c["iou"], c["sen"], c["spe"]], 1), loop)
