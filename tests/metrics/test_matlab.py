"""MATLAB behaviours: rounding, rgb2gray, mapminmax, the threshold list, imresize."""
import math

import numpy as np
import pytest

from decseg.metrics.matlab import (
    imresize,
    mapminmax01,
    resize_contributions,
    rgb2gray,
    round_half_away,
    toolbox_thresholds,
)
from decseg.metrics.readers import gt_to_mask


def test_round_half_away_from_zero_unlike_numpy():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999999999999994, 127.5])
    assert round_half_away(x).tolist() == [1, 2, 3, -1, -3, 0, 128]
    assert np.round(x).tolist() != round_half_away(x).tolist()  # numpy: half to even


@pytest.mark.parametrize("rgb, grey, fg", [
    ((129, 129, 128), 129, True),   # 129 - 0.114 -> 128.886 -> 129
    ((128, 128, 129), 128, False),  # 128.114 -> 128, and 128 is not > 128
    ((129, 128, 128), 128, False),  # 128.299: a brighter red channel is not enough
    ((128, 129, 128), 129, True),   # 128.587
    ((128, 128, 132), 128, False),  # 128.456
    ((128, 128, 133), 129, True),   # 128.570
    ((128, 128, 128), 128, False),  # weights sum to just under 1
    ((255, 0, 0), 76, False),       # 76.229
    ((0, 255, 0), 150, True),       # 149.696
    ((0, 0, 255), 29, False),       # 29.075
])
def test_rgb_gt_uses_matlab_rgb2gray_then_strict_128(rgb, grey, fg):
    img = np.array(rgb, dtype=np.uint8).reshape(1, 1, 3)
    assert int(rgb2gray(img)[0, 0]) == grey
    assert bool(gt_to_mask(img)[0, 0]) == fg


def test_grey_gt_threshold_is_strict_and_16bit_is_raw():
    grey = np.array([[128, 129, 0, 255]], dtype=np.uint8)
    assert gt_to_mask(grey).tolist() == [[False, True, False, True]]
    # 16-bit: the toolbox compares raw values (no im2uint8), so 129 of 65535 is foreground.
    g16 = np.array([[128, 129, 65535, 0]], dtype=np.uint16)
    assert gt_to_mask(g16).tolist() == [[False, True, True, False]]
    logical = np.array([[True, False]])
    assert gt_to_mask(logical).tolist() == [[True, False]]


def test_thresholds_are_matlab_colon_not_linspace():
    t = toolbox_thresholds()
    assert t.shape == (256,) and t[0] == 1.0 and t[-1] == 0.0
    step = -1 / 255
    assert t[5] == 1 + 5 * step and t[200] == 55 * (1 / 255)
    assert not np.array_equal(t, np.linspace(1, 0, 256))
    assert not np.array_equal(t, 1 - np.arange(256) / 255)
    # Grey levels whose j/255 lies just below their own threshold (so they fail it).
    below = [j for j in range(256) if j / 255 < t[255 - j]]
    assert below == [138, 139, 154, 155, 170, 171, 186, 187, 202, 203, 218, 219, 235, 251]
    assert 251 / 255 < t[4] and 250 / 255 >= t[5]


def test_mapminmax_reciprocal_gain_gives_one_minus_ulp():
    # min 0, max 9/255: (9/255) * (1 / (9/255)) is 1 - 2^-53, not 1.
    x = np.array([0, 9, 4]) / 255
    y = mapminmax01(x)
    assert y.max() == 1 - 2 ** -53
    assert y.max() < toolbox_thresholds()[0]  # so it fails threshold 1
    assert ((x - x.min()) / (x.max() - x.min())).max() == 1.0  # a plain division would pass it
    # 0 and 255 map exactly.
    assert mapminmax01(np.array([0, 255]) / 255).max() == 1.0


def test_mapminmax_constant_map_is_unchanged():
    x = np.full((3, 3), 128 / 255)
    assert np.array_equal(mapminmax01(x), x)
    assert mapminmax01(np.zeros(4)).tolist() == [0, 0, 0, 0]


# ---------------------------------------------------------------- imresize
# Hand derivation, 2 -> 4 (scale 2): u = x/2 + 0.25 = 0.75, 1.25, 1.75, 2.25. For u = 0.75 the
# taps at distances 1.75, 0.75, 0.25, 1.25 weigh cubic() = -0.0234375, 0.2265625, 0.8671875,
# -0.0703125 on source indices -1, 0, 1, 2, which mirror to 2, 1, 1, 2.
UP_2_TO_4 = np.array([[1.09375, -0.09375], [0.796875, 0.203125], [0.203125, 0.796875], [-0.09375, 1.09375]])
# 4 -> 2 (scale 0.5, antialiased kernel 0.5*cubic(x/2), width 8): u = 1.5, 3.5; taps at
# indices -2..5 weigh 0.5*cubic(d/2), mirrored with aux = [1 2 3 4 4 3 2 1].
DOWN_4_TO_2 = np.array([[0.546875, 0.3984375, 0.1015625, -0.046875],
                        [-0.046875, 0.1015625, 0.3984375, 0.546875]])


def _round_clip(v):
    return np.clip(np.floor(v + 0.5), 0, 255)  # halves never occur with these dyadic weights


def test_contributions_match_hand_weights():
    for (n_in, n_out, expected) in ((2, 4, UP_2_TO_4), (4, 2, DOWN_4_TO_2)):
        w, idx = resize_contributions(n_in, n_out, n_out / n_in)
        dense = np.zeros((n_out, n_in))
        for i in range(n_out):
            for k in range(w.shape[1]):
                dense[i, idx[i, k]] += w[i, k]
        np.testing.assert_allclose(dense, expected, rtol=0, atol=1e-15)


def test_imresize_2x2_to_4x4_rounds_after_each_pass():
    a = np.array([[100, 200], [50, 153]], dtype=np.uint8)
    rows = _round_clip(UP_2_TO_4 @ a.astype(float))       # rows first (equal scales)
    expected = _round_clip(rows @ UP_2_TO_4.T)
    got = imresize(a, (4, 4))
    assert got.dtype == np.uint8
    assert got.tolist() == expected.astype(np.uint8).tolist()
    # By hand: column 0 -> 104.69, 89.84, 60.16, 45.31 -> 105, 90, 60, 45; column 1 -> 204, 190, 163, 149;
    # then row 0 = [105, 204] -> 95.72, 125.11, 183.89, 213.28.
    assert got[0].tolist() == [96, 125, 184, 213]
    # Clipping: an edge overshoots 255 and undershoots 0.
    edge = imresize(np.array([[0, 255]], dtype=np.uint8), (1, 4))
    assert edge.tolist() == [[0, 52, 203, 255]]  # -23.9 -> 0, 51.8 -> 52, 203.2 -> 203, 278.9 -> 255


def test_imresize_4x4_to_2x2_antialiased():
    a = np.array([[0, 40, 80, 255], [10, 20, 30, 40], [200, 100, 0, 50], [5, 250, 60, 7]], dtype=np.uint8)
    rows = _round_clip(DOWN_4_TO_2 @ a.astype(float))
    expected = _round_clip(rows @ DOWN_4_TO_2.T)
    assert imresize(a, (2, 2)).tolist() == expected.astype(np.uint8).tolist()


def _loop_imresize(a, out_shape):
    """Straightforward per-pixel version of MATLAB's formula, smaller scale first."""
    def cubic(x):
        x = abs(x)
        if x <= 1:
            return 1.5 * x ** 3 - 2.5 * x ** 2 + 1
        if x <= 2:
            return -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2
        return 0.0

    def along(img, axis, n_out):
        img = np.moveaxis(img, axis, 0)
        n_in = img.shape[0]
        s = n_out / n_in
        width = 4 / s if s < 1 else 4
        out = np.zeros((n_out,) + img.shape[1:])
        for i in range(1, n_out + 1):
            u = i / s + 0.5 * (1 - 1 / s)
            left = math.floor(u - width / 2)
            taps = [(left + k, (s * cubic(s * (u - left - k)) if s < 1 else cubic(u - left - k)))
                    for k in range(math.ceil(width) + 2)]
            total = sum(w for _, w in taps)
            for j, w in taps:
                m = (j - 1) % (2 * n_in)
                src = m if m < n_in else 2 * n_in - 1 - m
                out[i - 1] += (w / total) * img[src]
        return np.moveaxis(np.clip(np.floor(out + 0.5), 0, 255), 0, axis)

    scales = [out_shape[0] / a.shape[0], out_shape[1] / a.shape[1]]
    img = a.astype(float)
    for d in sorted(range(2), key=lambda d: scales[d]):
        img = along(img, d, out_shape[d])
    return img.astype(np.uint8)


@pytest.mark.parametrize("shape_in, shape_out", [((5, 7), (3, 11)), ((7, 5), (13, 2)), ((9, 6), (4, 4)), ((3, 3), (8, 5))])
def test_imresize_matches_straightforward_loop(shape_in, shape_out):
    a = np.random.default_rng(7).integers(0, 256, shape_in, dtype=np.uint8)
    np.testing.assert_array_equal(imresize(a, shape_out), _loop_imresize(a, shape_out))


def test_imresize_smaller_scale_dimension_goes_first():
    # Rows grow (x2), columns shrink (x0.5): columns must be resized first. Find an input where
    # the order changes the uint8 result and check we match the columns-first order.
    rng = np.random.default_rng(3)
    for _ in range(50):
        a = rng.integers(0, 256, (2, 4)).astype(float)
        cols_first = _round_clip(UP_2_TO_4 @ _round_clip(a @ DOWN_4_TO_2.T))
        rows_first = _round_clip(_round_clip(UP_2_TO_4 @ a) @ DOWN_4_TO_2.T)
        if not np.array_equal(cols_first, rows_first):
            break
    else:
        pytest.fail("no order-sensitive input found")
    got = imresize(a.astype(np.uint8), (4, 2))
    assert got.tolist() == cols_first.astype(np.uint8).tolist()
    assert got.tolist() != rows_first.astype(np.uint8).tolist()


def test_imresize_logical_is_thresholded_uint8():
    m = np.zeros((4, 4), bool)
    m[1:3, 1:3] = True
    out = imresize(m, (8, 8))
    assert out.dtype == np.bool_
    ref = imresize(m.astype(np.uint8) * np.uint8(255), (8, 8)) > 128
    assert np.array_equal(out, ref) and out.sum() > 0


def test_imresize_rounds_and_clips_between_passes():
    # The uint8 result of the first pass (rounded, clipped to 0..255) feeds the second pass.
    rng = np.random.default_rng(11)
    for _ in range(200):
        a = rng.integers(0, 256, (2, 2)).astype(float)
        per_pass = _round_clip(_round_clip(UP_2_TO_4 @ a) @ UP_2_TO_4.T)
        one_go = _round_clip(UP_2_TO_4 @ a @ UP_2_TO_4.T)
        if not np.array_equal(per_pass, one_go):
            break
    else:
        pytest.fail("no input found where intermediate rounding matters")
    got = imresize(a.astype(np.uint8), (4, 4))
    assert got.tolist() == per_pass.astype(np.uint8).tolist() != one_go.astype(np.uint8).tolist()
