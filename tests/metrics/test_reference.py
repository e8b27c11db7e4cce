"""A deliberately naive, literal replay of the MATLAB toolbox (docs/EVALUATION.md), written
independently of ``decseg.metrics`` and compared with it on many random small cases.

Loops are kept where they make the reference obviously faithful; images are tiny so it stays fast.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import distance_transform_edt

from decseg.metrics import aggregate, evaluate_folder, evaluate_image

EPS = 2.0**-52
KEYS = ("meanDic", "meanIoU", "wFm", "Sm", "meanEm", "MAE", "maxEm", "maxDice", "maxIoU",
        "meanSen", "maxSen", "meanSpe", "maxSpe")


# ----------------------------------------------------------------------------- helpers
def round_half_away(v: float) -> float:
    """MATLAB ``round`` on the exact value (not floor(v + 0.5), whose sum is itself rounded)."""
    a = abs(v)
    r = math.floor(a) + (1 if a - math.floor(a) >= 0.5 else 0)
    return r if v >= 0 else -r


def ref_thresholds() -> list[float]:
    """MATLAB ``1:-1/255:0``: 1 + k*(-1/255) for the first half, m*(1/255) for the second."""
    step = 1.0 / 255.0
    first = [1.0 + k * (-step) for k in range(128)]
    second = [m * step for m in range(127, -1, -1)]
    return first + second


# ----------------------------------------------------------------------------- imresize
def cubic(x: float) -> float:
    # MATLAB's absx.^3 is pow (0.3^3 ~= 0.3*0.3*0.3 there): taken as the correctly rounded cube
    ax = abs(x)
    ax2 = ax * ax
    ax3 = float(Fraction(ax) ** 3)
    if ax <= 1:
        return 1.5 * ax3 - 2.5 * ax2 + 1
    if ax <= 2:
        return -0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2
    return 0.0


def contributions(in_len: int, out_len: int, scale: float):
    """Per output index: list of (source index 0-based, weight), MATLAB's ``contributions``."""
    width = 4.0
    if scale < 1:
        def h(x):
            return scale * cubic(scale * x)
        width = width / scale
    else:
        h = cubic
    mirror = list(range(1, in_len + 1)) + list(range(in_len, 0, -1))
    rows = []
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        p = math.ceil(width) + 2
        idx = [left + j for j in range(p)]
        w = [h(u - i) for i in idx]
        total = 0.0
        for wi in w:  # plain left-to-right sum (Python's sum() is compensated since 3.12)
            total += wi
        w = [wi / total for wi in w]
        src = [mirror[(i - 1) % len(mirror)] - 1 for i in idx]
        rows.append(list(zip(src, w)))
    return rows


def resize_dim(img: np.ndarray, axis: int, out_len: int, scale: float, maxval: int) -> np.ndarray:
    in_len = img.shape[axis]
    rows = contributions(in_len, out_len, scale)
    moved = np.moveaxis(img.astype(np.float64), axis, 0)
    out = np.zeros((out_len,) + moved.shape[1:])
    for o, pairs in enumerate(rows):
        acc = np.zeros(moved.shape[1:])
        for s, w in pairs:
            if w != 0:
                acc = acc + w * moved[s]
        # uint8/uint16 output: round half away from zero, then saturate
        acc = np.array([round_half_away(float(v)) for v in acc.ravel()]).reshape(acc.shape)
        out[o] = np.clip(acc, 0, maxval)
    return np.moveaxis(out, 0, axis)


def ref_imresize(img: np.ndarray, out_h: int, out_w: int, maxval: int) -> np.ndarray:
    scales = [out_h / img.shape[0], out_w / img.shape[1]]
    outs = [out_h, out_w]
    order = [0, 1] if scales[0] <= scales[1] else [1, 0]  # stable sort: rows first on ties
    cur = img
    for axis in order:
        cur = resize_dim(cur, axis, outs[axis], scales[axis], maxval)
    return cur


# ----------------------------------------------------------------------------- inputs
def ref_gt(gt: np.ndarray) -> np.ndarray:
    if gt.dtype == bool:
        return gt if gt.ndim == 2 else gt[..., 0]
    if gt.ndim == 3:
        g = np.zeros(gt.shape[:2])
        for i in range(gt.shape[0]):
            for j in range(gt.shape[1]):
                r, gg, b = (float(v) for v in gt[i, j, :3])
                g[i, j] = round_half_away(0.298936021293775 * r + 0.587043074451121 * gg
                                          + 0.114020904255103 * b)
        return g > 128
    return gt > 128


def ref_pred(pred: np.ndarray, shape) -> np.ndarray:
    maxval = 65535 if pred.dtype == np.uint16 else 255
    first = pred[..., 0] if pred.ndim == 3 else pred
    if first.shape != tuple(shape):
        first = ref_imresize(first, shape[0], shape[1], maxval)
    x = first.astype(np.float64) / maxval
    lo, hi = x.min(), x.max()
    if hi == lo:
        return x
    g = 1.0 / (hi - lo)
    return (x - lo) * g


# ----------------------------------------------------------------------------- S-measure
def mean2(a: np.ndarray) -> float:
    return float(np.sum(a)) / a.size if a.size else float("nan")


def obj_score(v: np.ndarray) -> float:
    if v.size == 0:
        return 0.0
    m = mean2(v)
    sd = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return 2.0 * m / (m * m + 1.0 + sd + EPS)


def ssim_like(p: np.ndarray, g: np.ndarray) -> float:
    gd = g.astype(np.float64)
    n = p.size
    x, y = mean2(p), mean2(gd)
    vx = float(np.sum((p - x) ** 2)) / (n - 1 + EPS)
    vy = float(np.sum((gd - y) ** 2)) / (n - 1 + EPS)
    cxy = float(np.sum((p - x) * (gd - y))) / (n - 1 + EPS)
    a = 4 * x * y * cxy
    b = (x * x + y * y) * (vx + vy)
    if a != 0:  # NaN != 0 too, like MATLAB
        return a / (b + EPS)
    if b == 0:
        return 1.0
    return 0.0


def ref_sm(y: np.ndarray, gt: np.ndarray) -> float:
    fg = mean2(gt.astype(np.float64))
    if fg == 0:
        return 1.0 - mean2(y)
    if fg == 1:
        return mean2(y)
    u = fg
    o_fg = obj_score(y[gt])
    o_bg = obj_score((1.0 - y)[~gt])
    obj = u * o_fg + (1 - u) * o_bg
    rows, cols = gt.shape
    total = gt.sum()
    X = int(round_half_away(sum(gt[:, j].sum() * (j + 1) for j in range(cols)) / total))
    Y = int(round_half_away(sum(gt[i, :].sum() * (i + 1) for i in range(rows)) / total))
    area = rows * cols
    w1 = X * Y / area
    w2 = (cols - X) * Y / area
    w3 = X * (rows - Y) / area
    w4 = 1.0 - w1 - w2 - w3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = (w1 * ssim_like(y[:Y, :X], gt[:Y, :X]) + w2 * ssim_like(y[:Y, X:], gt[:Y, X:])
             + w3 * ssim_like(y[Y:, :X], gt[Y:, :X]) + w4 * ssim_like(y[Y:, X:], gt[Y:, X:]))
    s = 0.5 * obj + 0.5 * q
    return 0.0 if s < 0 else s


# ----------------------------------------------------------------------------- weighted F
def gaussian7() -> np.ndarray:
    k = np.zeros((7, 7))
    for i in range(-3, 4):
        for j in range(-3, 4):
            k[i + 3, j + 3] = math.exp(-(i * i + j * j) / (2.0 * 25.0))
    k[k < EPS * k.max()] = 0
    return k / k.sum()


def ref_wfm(y: np.ndarray, gt: np.ndarray, nearest: np.ndarray | None = None) -> float:
    """``nearest`` optionally fixes which of several equidistant FG pixels a BG pixel takes
    (a (2, H, W) index array); it must still be a nearest one."""
    if not gt.any():
        return 0.0
    h, w = gt.shape
    E = np.abs(y - gt.astype(np.float64))
    fg = np.argwhere(gt)
    Et = E.copy()
    D = np.zeros((h, w), dtype=np.float32)
    for i in range(h):
        for j in range(w):
            if not gt[i, j]:
                d2 = (fg[:, 0] - i) ** 2 + (fg[:, 1] - j) ** 2
                k = int(np.argmin(d2))  # tie rule is implementation-defined (an accepted difference, docs/EVALUATION.md)
                if nearest is not None:
                    ni, nj = nearest[0, i, j], nearest[1, i, j]
                    assert gt[ni, nj] and (ni - i) ** 2 + (nj - j) ** 2 == d2[k]
                    k = int(np.flatnonzero((fg[:, 0] == ni) & (fg[:, 1] == nj))[0])
                Et[i, j] = E[fg[k, 0], fg[k, 1]]
                D[i, j] = np.sqrt(np.float32(d2[k]))
    K = gaussian7()
    EA = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            acc = 0.0
            for di in range(-3, 4):
                for dj in range(-3, 4):
                    ii, jj = i + di, j + dj
                    if 0 <= ii < h and 0 <= jj < w:
                        acc += K[di + 3, dj + 3] * Et[ii, jj]
            EA[i, j] = acc
    minE = E.copy()
    sel = gt & (EA < E)
    minE[sel] = EA[sel]
    B = np.ones((h, w))
    # MATLAB: double scalar times single array is single, so the whole weight is single
    c = np.float32(math.log(1 - 0.5) / 5)
    B[~gt] = (np.float32(2) - np.exp(c * D[~gt])).astype(np.float64)
    Ew = minE * B
    tpw = gt.sum() - Ew[gt].sum()
    fpw = Ew[~gt].sum()
    R = 1 - mean2(Ew[gt])
    P = tpw / (EPS + tpw + fpw)
    return 2 * R * P / (EPS + R + P)


# ----------------------------------------------------------------------------- curves
def ref_curves(y: np.ndarray, gt: np.ndarray):
    n = gt.size
    ngt = int(gt.sum())
    out = {k: [] for k in ("dice", "iou", "sen", "spe", "em")}
    gd = gt.astype(np.float64)
    for t in ref_thresholds():
        f = y >= t
        pn = int(f.sum())
        tp = int((f & gt).sum())
        fn = ngt - tp
        fp = pn - tp
        tn = n - pn - fn
        if tp == 0:
            dice = iou = sen = spe = 0.0
        else:
            iou = tp / (tp + fp + fn)
            sen = tp / ngt
            spe = tn / (tn + fp) if (tn + fp) else float("nan")
            dice = 2 * tp / (ngt + pn)
        fd = f.astype(np.float64)
        if ngt == 0:
            enh = 1.0 - fd
        elif ngt == n:
            enh = fd
        else:
            ag = gd - gd.mean()
            af = fd - fd.mean()
            align = 2 * ag * af / (ag * ag + af * af + EPS)
            enh = (align + 1) ** 2 / 4
        em = float(enh.sum()) / (n - 1 + EPS)
        for key, v in zip(("dice", "iou", "sen", "spe", "em"), (dice, iou, sen, spe, em)):
            out[key].append(v)
    return {k: np.array(v) for k, v in out.items()}


def ref_image(pred: np.ndarray, gt_raw: np.ndarray) -> dict:
    gt = ref_gt(gt_raw)
    y = ref_pred(pred, gt.shape)
    nearest = None
    if gt.any():
        # tie choice only: scipy's nearest FG pixel (the evaluator's library); ref_wfm checks
        # that it is a nearest one and does the rest itself
        nearest = distance_transform_edt(~gt, return_distances=False, return_indices=True)
    return {"curves": ref_curves(y, gt), "sm": ref_sm(y, gt), "wfm": ref_wfm(y, gt, nearest),
            "mae": mean2(np.abs(gt.astype(np.float64) - y))}


def ref_dataset(images: list[dict]) -> dict:
    curves = {k: np.mean([im["curves"][k] for im in images], axis=0) for k in images[0]["curves"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = {}
        for key, c in (("Dic", "dice"), ("IoU", "iou"), ("Sen", "sen"), ("Spe", "spe"),
                       ("Em", "em")):
            res["mean" + key] = float(np.mean(curves[c]))
            res["max" + key] = float(np.nanmax(curves[c]))
    res["maxDice"] = res.pop("maxDic")
    res["Sm"] = float(np.mean([im["sm"] for im in images]))
    res["wFm"] = float(np.mean([im["wfm"] for im in images]))
    res["MAE"] = float(np.mean([im["mae"] for im in images]))
    return res


def ties_matter(y: np.ndarray, gt: np.ndarray) -> bool:
    """True when some background pixel has several nearest FG pixels with different errors."""
    if not gt.any():
        return False
    E = np.abs(y - gt.astype(np.float64))
    fg = np.argwhere(gt)
    efg = E[gt]
    for i, j in np.argwhere(~gt):
        d2 = (fg[:, 0] - i) ** 2 + (fg[:, 1] - j) ** 2
        vals = efg[d2 == d2.min()]
        if vals.max() != vals.min():
            return True
    return False


# ----------------------------------------------------------------------------- cases
def blob_gt(rng, h, w) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(1, h / 2 + 1), rng.uniform(1, w / 2 + 1)
    return (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)


def make_cases(seed: int = 0):
    rng = np.random.default_rng(seed)
    cases = []

    def grey(m):
        return np.where(m, 255, 0).astype(np.uint8)

    # soft and binary maps on blob GTs, same size
    for k in range(8):
        h, w = rng.integers(5, 16, size=2)
        gt = blob_gt(rng, h, w)
        soft = rng.integers(0, 256, size=(h, w)).astype(np.uint8)
        cases.append((f"soft{k}", soft, grey(gt)))
        binm = grey(rng.random((h, w)) < 0.4)
        cases.append((f"bin{k}", binm, grey(gt)))
    # smooth maps correlated with GT (realistic): blurred GT plus noise
    for k in range(4):
        h, w = rng.integers(8, 16, size=2)
        gt = blob_gt(rng, h, w)
        p = np.clip(gt * 200.0 + rng.normal(30, 40, size=(h, w)), 0, 255).astype(np.uint8)
        cases.append((f"corr{k}", p, grey(gt)))
    # resizing: up, down, mixed, non-integer
    for k, (ps, gs) in enumerate([((37, 53), (50, 41)), ((20, 30), (13, 17)), ((9, 7), (15, 22)),
                                  ((16, 16), (8, 8)), ((8, 8), (16, 16)), ((11, 13), (11, 20)),
                                  ((12, 10), (7, 10)), ((5, 40), (30, 6))]):
        gt = blob_gt(rng, *gs)
        p = rng.integers(0, 256, size=ps).astype(np.uint8)
        cases.append((f"resize{k}", p, grey(gt)))
    # RGB prediction with differing channels (only the first is used), also resized
    gt = blob_gt(rng, 12, 9)
    cases.append(("rgbpred", rng.integers(0, 256, size=(12, 9, 3)).astype(np.uint8), grey(gt)))
    cases.append(("rgbpred_rs", rng.integers(0, 256, size=(10, 14, 3)).astype(np.uint8), grey(gt)))
    # 16-bit prediction
    cases.append(("u16", rng.integers(0, 65536, size=(12, 9)).astype(np.uint16), grey(gt)))
    # empty / full / single pixel GT
    h, w = 9, 11
    soft = rng.integers(0, 256, size=(h, w)).astype(np.uint8)
    cases.append(("emptygt", soft, np.zeros((h, w), np.uint8)))
    cases.append(("fullgt", soft, np.full((h, w), 255, np.uint8)))
    one = np.zeros((h, w), np.uint8)
    one[4, 6] = 255
    cases.append(("onepix", soft, one))
    corner = np.zeros((h, w), np.uint8)
    corner[0, 0] = 255
    cases.append(("cornerpix", soft, corner))
    # GT touching borders, incl. FG only in the last column / last row (empty quadrants)
    border = np.zeros((h, w), np.uint8)
    border[:, :3] = 255
    border[0, :] = 255
    cases.append(("border", soft, border))
    lastcol = np.zeros((h, w), np.uint8)
    lastcol[2:7, -1] = 255
    cases.append(("lastcol", soft, lastcol))
    lastrow = np.zeros((h, w), np.uint8)
    lastrow[-1, 3:8] = 255
    cases.append(("lastrow", soft, lastrow))
    # symmetric blob: centroid at exact .5
    sym = np.zeros((h, w), np.uint8)
    sym[3:5, 4:8] = 255  # rows 4,5 (1-based) -> 4.5; cols 5..8 -> 6.5
    cases.append(("symblob", soft, sym))
    # constant maps
    g = grey(blob_gt(rng, h, w))
    for v in (0, 128, 255, 1):
        cases.append((f"const{v}", np.full((h, w), v, np.uint8), g))
    cases.append(("const128_empty", np.full((h, w), 128, np.uint8), np.zeros((h, w), np.uint8)))
    cases.append(("const128_full", np.full((h, w), 128, np.uint8), np.full((h, w), 255, np.uint8)))
    # two-level maps whose normalised max may fall just below 1
    two = np.where(rng.random((h, w)) < 0.5, 3, 250).astype(np.uint8)
    cases.append(("two_level", two, g))
    # every grey level near the tricky thresholds
    levels = np.array([0, 251, 235, 219, 218, 203, 202, 187, 186, 171, 170, 155, 154, 139, 138,
                       255] * 6, np.uint8)[:96].reshape(8, 12)
    cases.append(("tricky_levels", levels, grey(blob_gt(rng, 8, 12))))
    # RGB GTs: grey near 128 after rgb2gray, plus a 4-channel one
    rgb = rng.integers(100, 160, size=(h, w, 3)).astype(np.uint8)
    cases.append(("rgbgt", soft, rgb))
    col = np.zeros((h, w, 3), np.uint8)
    col[2:6, 3:9] = (255, 0, 0)  # red -> grey 76 -> background
    col[5:8, 1:5] = (200, 200, 200)
    cases.append(("rgbgt2", soft, col))
    # boolean GT (a 1-bit PNG)
    cases.append(("boolgt", soft, blob_gt(rng, h, w)))
    return cases


CASES = make_cases()


@pytest.fixture(scope="module")
def reference_results():
    return {name: ref_image(p, g) for name, p, g in CASES}


@pytest.mark.parametrize("name,pred,gt", CASES, ids=[c[0] for c in CASES])
def test_per_image_matches_reference(name, pred, gt, reference_results):
    ref = reference_results[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = evaluate_image(pred, gt, name=name)
    for key, curve in ref["curves"].items():
        np.testing.assert_allclose(rec.curves[key], curve, rtol=0, atol=1e-10, equal_nan=True,
                                   err_msg=f"{name}: curve {key}")
    np.testing.assert_allclose(rec.sm, ref["sm"], rtol=0, atol=1e-10, equal_nan=True,
                               err_msg=f"{name}: Sm")
    np.testing.assert_allclose(rec.mae, ref["mae"], rtol=0, atol=1e-10, err_msg=f"{name}: MAE")
    g = ref_gt(gt)
    tol = 1e-3 if ties_matter(ref_pred(pred, g.shape), g) else 1e-10
    np.testing.assert_allclose(rec.wfm, ref["wfm"], rtol=0, atol=tol, err_msg=f"{name}: wFm")


def test_reference_thresholds_match_design_facts():
    """Pins the reference itself to the stated consequences of ``1:-1/255:0``."""
    th = ref_thresholds()
    assert len(th) == 256 and th[0] == 1.0 and th[-1] == 0.0
    below = {251, 235, 219, 218, 203, 202, 187, 186, 171, 170, 155, 154, 139, 138}
    for j in range(256):
        own = th[255 - j]
        assert (j / 255 < own) == (j in below), j
    # mapminmax as reciprocal-then-multiply leaves the maximum below 1 for some pairs
    assert any(ref_pred(np.array([[a, b]], np.uint8), (1, 2)).max() < 1
               for a in range(0, 20) for b in range(200, 256))


def test_reference_imresize_matches_evaluator_on_many_sizes():
    from decseg.metrics import imresize

    rng = np.random.default_rng(1)
    for _ in range(40):
        ih, iw, oh, ow = (int(v) for v in rng.integers(2, 14, size=4))
        img = rng.integers(0, 256, size=(ih, iw)).astype(np.uint8)
        ours = imresize(img, (oh, ow))
        assert ours.dtype == np.uint8
        np.testing.assert_array_equal(ours, ref_imresize(img, oh, ow, 255),
                                      err_msg=f"{ih}x{iw} -> {oh}x{ow}")


def test_dataset_aggregate_matches_reference(reference_results):
    """Curves averaged per threshold, meanX with NaN propagating, maxX ignoring NaN; uses
    images whose Spe curves hold NaN (full GT) and an S-measure NaN (last-column GT)."""
    groups = {
        "plain": ["soft0", "bin4", "corr0", "resize2", "onepix", "emptygt", "const128"],
        "with_full_gt": ["soft0", "fullgt", "const128_full", "bin7"],
        "with_nan_sm": ["bin4", "lastcol"],
    }
    by_name = {c[0]: c for c in CASES}
    for group, names in groups.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            recs = [evaluate_image(by_name[n][1], by_name[n][2], name=n) for n in names]
            ours = aggregate(recs)
        ref = ref_dataset([reference_results[n] for n in names])
        for key in KEYS:
            np.testing.assert_allclose(ours[key], ref[key], rtol=0, atol=1e-10, equal_nan=True,
                                       err_msg=f"{group}: {key}")
    assert math.isnan(ref_dataset([reference_results["fullgt"]])["meanSpe"])


def read_like_imread(path: Path) -> np.ndarray:
    im = Image.open(path)
    if im.mode == "1":
        return np.array(im, dtype=bool)
    if im.mode.startswith("I"):
        return np.array(im).astype(np.uint16)
    return np.array(im)


def test_folder_matches_reference_from_png_files(tmp_path):
    """Real PNG files: grey, RGB and 16-bit predictions; grey, RGB and 1-bit GTs; resizing."""
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    names = ["soft0", "bin4", "corr0", "resize0", "resize2", "rgbpred_rs", "u16", "onepix",
             "emptygt", "fullgt", "rgbgt2", "boolgt", "const128", "symblob"]
    by_name = {c[0]: c for c in CASES}
    refs = []
    for n in sorted(names):
        _, pred, gt = by_name[n]
        Image.fromarray(pred).save(pred_dir / f"{n}.png")
        if gt.dtype == bool:
            Image.fromarray(gt).convert("1").save(gt_dir / f"{n}.png")
        else:
            Image.fromarray(gt).save(gt_dir / f"{n}.png")
        p_back = read_like_imread(pred_dir / f"{n}.png")
        g_back = read_like_imread(gt_dir / f"{n}.png")
        np.testing.assert_array_equal(p_back, pred)
        np.testing.assert_array_equal(g_back, gt)
        refs.append(ref_image(p_back, g_back))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = evaluate_folder(pred_dir, gt_dir, workers=1)
    ref = ref_dataset(refs)
    for key in KEYS:
        np.testing.assert_allclose(ours[key], ref[key], rtol=0, atol=1e-10, equal_nan=True,
                                   err_msg=key)


def test_cubic_kernel_uses_correctly_rounded_cube():
    """MATLAB's ``absx.^3`` is pow: 0.3^3 = 0.026999999999999996 there, not 0.3*0.3*0.3 = 0.027.
    numpy's ``** 3`` (SIMD on AVX-512) gives 0.027 on some CPUs; the kernel must not."""
    from decseg.metrics.matlab import _cubic

    assert 0.3 * 0.3 * 0.3 == 0.027
    expected = 1.5 * 0.026999999999999996 - 2.5 * (0.3 * 0.3) + 1
    assert _cubic(np.array([0.3]))[0] == expected
    assert cubic(0.3) == expected


def test_cube_is_correctly_rounded():
    from decseg.metrics.matlab import _cube

    rng = np.random.default_rng(2)
    xs = np.concatenate([rng.uniform(0, 2.5, 3000), np.arange(0, 2.5, 1 / 1024),
                         np.arange(1, 400) / 7 / 80])
    exact = np.array([float(Fraction(float(v)) ** 3) for v in xs])
    np.testing.assert_array_equal(_cube(xs), exact)


def test_imresize_rounding_tie_pinned():
    """Upscaling 20 -> 25 columns (scale 1.25) gives weights that are multiples of 0.0005, so
    exact .5 sums are common; the kernel's last bit decides them. Pinned pixel: with
    correctly rounded cubes (MATLAB's pow) it is 48651; numpy's SIMD ``** 3`` gave 48652."""
    from decseg.metrics import imresize

    img = ((np.arange(120, dtype=np.int64) * 12345) % 65536).astype(np.uint16).reshape(6, 20)
    out = imresize(img, (7, 25))
    assert out[0, 5] == 48651
    np.testing.assert_array_equal(out, ref_imresize(img, 7, 25, 65535))
