"""The two HD95 definitions and ASD: hand-computed cases (2D, 3D, anisotropic spacing), the
boundary rule, the empty-mask rules, and cross-checks against MONAI and medpy on random masks."""
import math

import numpy as np
import pytest
from scipy import ndimage

from decseg.metrics.surface import asd, boundary, case_metrics, hd95_medpy, hd95_monai, overlap


def _line_with_outlier():
    """GT: row 0, columns 0..9. Prediction: the same line plus the isolated pixel (5, 0).

    Both are one pixel thick, so every pixel is boundary. pred -> GT distances: ten 0s and 5;
    GT -> pred: ten 0s.
    """
    gt = np.zeros((6, 10), bool)
    gt[0, :] = True
    pred = gt.copy()
    pred[5, 0] = True
    return pred, gt


def test_hand_case_where_the_definitions_differ():
    pred, gt = _line_with_outlier()
    # MONAI: 95th percentile of [0 x 10, 5] (11 values) at index 0.95 * 10 = 9.5 -> 0 + 0.5 * 5.
    assert hd95_monai(pred, gt) == pytest.approx(2.5, abs=1e-12)
    # medpy: the pooled 21 values [0 x 20, 5] at index 0.95 * 20 = 19 -> 0.
    assert hd95_medpy(pred, gt) == 0.0
    assert asd(pred, gt) == pytest.approx(5 / 11, abs=1e-12)  # directed: prediction -> GT
    assert asd(gt, pred) == 0.0


def test_hand_case_with_anisotropic_pixels():
    pred, gt = _line_with_outlier()
    spacing = (2.0, 1.0)  # rows 2 mm apart: the outlier is 10 mm from (0, 0)
    assert hd95_monai(pred, gt, spacing) == pytest.approx(5.0, abs=1e-12)
    assert hd95_medpy(pred, gt, spacing) == 0.0
    assert asd(pred, gt, spacing) == pytest.approx(10 / 11, abs=1e-12)


def test_hand_case_square_rings():
    """GT 3x3 square inside a 5x5 predicted square (one pixel margin all round).

    Boundaries: the GT's 8-pixel ring (its centre is interior) and the prediction's 16-pixel ring.
    pred -> GT: 12 edge pixels at 1, 4 corners at sqrt 2; GT -> pred: 8 pixels at 1.
    """
    gt = np.zeros((7, 7), bool)
    gt[2:5, 2:5] = True
    pred = np.zeros((7, 7), bool)
    pred[1:6, 1:6] = True
    assert boundary(gt).sum() == 8 and not boundary(gt)[3, 3]
    r2 = math.sqrt(2)
    # MONAI: max(pct95 of [1 x 12, r2 x 4] = r2 (index 14.25 lies among the r2s), pct95 of [1 x 8] = 1).
    assert hd95_monai(pred, gt) == pytest.approx(r2, abs=1e-12)
    # medpy: pooled [1 x 20, r2 x 4], index 0.95 * 23 = 21.85 -> r2.
    assert hd95_medpy(pred, gt) == pytest.approx(r2, abs=1e-12)
    assert asd(pred, gt) == pytest.approx((12 + 4 * r2) / 16, abs=1e-12)
    assert asd(gt, pred) == pytest.approx(1.0, abs=1e-12)
    dice, iou = overlap(pred, gt)
    assert (dice, iou) == (pytest.approx(18 / 34), pytest.approx(9 / 25))


def test_boundary_uses_connectivity_one_as_medpy_and_monai():
    """A plus sign's centre has all 4 neighbours, so it is interior; its arms lie on the boundary
    of the 3x3 square. With an 8-neighbour erosion the centre would be boundary and ASD 1/5."""
    plus = ndimage.generate_binary_structure(2, 1)
    square = np.ones((3, 3), bool)
    assert boundary(plus).sum() == 4 and not boundary(plus)[1, 1]
    assert asd(plus, square) == 0.0
    # Square ring -> plus arms: 4 pixels on an arm (0), 4 corners next to one (1).
    assert asd(square, plus) == pytest.approx(0.5, abs=1e-12)
    # MONAI: max(pct95 [0 x 4, 1 x 4] = 1, pct95 [0 x 4] = 0); medpy: pooled [0 x 8, 1 x 4] index 10.45 -> 1.
    assert hd95_monai(square, plus) == pytest.approx(1.0, abs=1e-12)
    assert hd95_medpy(square, plus) == pytest.approx(1.0, abs=1e-12)


def test_hand_case_3d_points_with_anisotropic_spacing():
    """GT: voxel (0, 0, 0). Prediction: that voxel, (2, 0, 0) and (0, 3, 0); spacing (5, 1, 0.5) mm."""
    gt = np.zeros((3, 4, 2), bool)
    gt[0, 0, 0] = True
    pred = gt.copy()
    pred[2, 0, 0] = pred[0, 3, 0] = True
    spacing = (5.0, 1.0, 0.5)
    # pred -> GT: [0, 10, 3] -> pct95 at index 1.9: 3 + 0.9 * 7 = 9.3; GT -> pred: [0].
    assert hd95_monai(pred, gt, spacing) == pytest.approx(9.3, abs=1e-12)
    # pooled [0, 0, 3, 10] -> index 2.85: 3 + 0.85 * 7 = 8.95.
    assert hd95_medpy(pred, gt, spacing) == pytest.approx(8.95, abs=1e-12)
    assert asd(pred, gt, spacing) == pytest.approx(13 / 3, abs=1e-12)
    # In voxels: [0, 2, 3] -> 2.9; pooled [0, 0, 2, 3] -> 2.85; ASD 5/3.
    assert hd95_monai(pred, gt) == pytest.approx(2.9, abs=1e-12)
    assert hd95_medpy(pred, gt) == pytest.approx(2.85, abs=1e-12)
    assert asd(pred, gt) == pytest.approx(5 / 3, abs=1e-12)


def test_hand_case_3d_cubes_shifted_along_the_coarse_axis():
    """GT: a 3x3x3 cube at slices 0..2; prediction: the same cube at slices 1..3; spacing (2, 1, 1).

    Each boundary is 26 voxels (6-neighbour erosion keeps the centre). pred -> GT: its slice-3
    face (9 voxels) is 2 mm from the GT's slice-2 face; its slice-1 face has 8 voxels on the GT's
    ring (0) and a centre 1 mm from the GT's ring; its slice-2 ring lies on the GT's face (0).
    So [0 x 16, 1, 2 x 9], and by symmetry the same from GT to prediction.
    """
    gt = np.zeros((4, 3, 3), bool)
    gt[0:3] = True
    pred = np.zeros((4, 3, 3), bool)
    pred[1:4] = True
    assert boundary(gt).sum() == 26
    spacing = (2.0, 1.0, 1.0)
    assert hd95_monai(pred, gt, spacing) == pytest.approx(2.0, abs=1e-12)  # index 23.75 among the 2s
    assert hd95_medpy(pred, gt, spacing) == pytest.approx(2.0, abs=1e-12)  # index 48.45 among the 2s
    assert asd(pred, gt, spacing) == pytest.approx(19 / 26, abs=1e-12)
    assert case_metrics(pred, gt, spacing)["Dice"] == pytest.approx(2 * 18 / 54)


def test_empty_rules():
    empty = np.zeros((4, 4), bool)
    blob = empty.copy()
    blob[1:3, 1:3] = True
    both = case_metrics(empty, empty)
    assert both == {"Dice": 1.0, "IoU": 1.0, "HD95": 0.0, "HD95_medpy": 0.0, "ASD": 0.0}
    for pred, gt in ((blob, empty), (empty, blob)):
        one = case_metrics(pred, gt)
        assert one["Dice"] == 0.0 and one["IoU"] == 0.0
        assert all(math.isnan(one[k]) for k in ("HD95", "HD95_medpy", "ASD"))
    with pytest.raises(ValueError, match="differ in shape"):
        case_metrics(blob, blob[:3])
    with pytest.raises(ValueError, match="spacing"):
        hd95_monai(blob, blob, (1.0, 1.0, 1.0))


def _random_masks(rng, shape, n):
    """Irregular masks (thresholded smoothed noise, a few stray pixels), some touching the border."""
    out = []
    for _ in range(n):
        pair = []
        for _ in range(2):
            field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
            m = field > np.quantile(field, rng.uniform(0.6, 0.9))
            m[tuple(rng.integers(0, s, 3) for s in shape)] = True
            pair.append(m)
        out.append(pair)
    return out


def test_cross_check_with_medpy_2d_and_3d():
    from medpy.metric import binary

    rng = np.random.default_rng(0)
    for shape, spacing in (((40, 48), None), ((40, 48), (0.7, 1.3)), ((14, 16, 6), (0.8, 1.1, 4.0))):
        for pred, gt in _random_masks(rng, shape, 8):
            assert hd95_medpy(pred, gt, spacing) == pytest.approx(binary.hd95(pred, gt, spacing), abs=1e-9)
            assert asd(pred, gt, spacing) == pytest.approx(binary.asd(pred, gt, spacing), abs=1e-9)
            assert overlap(pred, gt)[0] == pytest.approx(binary.dc(pred, gt), abs=1e-12)
            assert overlap(pred, gt)[1] == pytest.approx(binary.jc(pred, gt), abs=1e-12)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI's own deprecation notice inside get_mask_edges
def test_cross_check_with_monai_2d_and_3d():
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    def monai(fn, pred, gt, spacing, **kw):
        t = lambda m: torch.from_numpy(m[None, None].astype(np.float32))  # noqa: E731
        return float(fn(t(pred), t(gt), include_background=True, spacing=spacing, **kw)[0, 0])

    rng = np.random.default_rng(1)
    differs = 0.0
    for shape, spacing in (((40, 48), None), ((40, 48), (0.7, 1.3)), ((14, 16, 6), (0.8, 1.1, 4.0))):
        for pred, gt in _random_masks(rng, shape, 8):
            ours = hd95_monai(pred, gt, spacing)
            assert ours == pytest.approx(monai(compute_hausdorff_distance, pred, gt, spacing, percentile=95),
                                         abs=1e-4)  # MONAI's distances are float32
            assert asd(pred, gt, spacing) == pytest.approx(
                monai(compute_average_surface_distance, pred, gt, spacing, symmetric=False), abs=1e-4)
            differs = max(differs, abs(ours - hd95_medpy(pred, gt, spacing)))
    assert differs > 0.5  # the two definitions really are different numbers on such masks
