"""Per-image pipeline, dataset aggregation, binary_mean_dice, and file handling on real files."""
import math
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from decseg.errors import DataError
from decseg.metrics import (
    TOOLBOX_KEYS,
    EvaluationWarning,
    aggregate,
    binary_mean_dice,
    evaluate_folder,
    evaluate_image,
    evaluate_records,
    evaluate_sets,
    imresize,
    toolbox_thresholds,
)
from decseg.metrics.readers import read_gt, read_prediction

T = toolbox_thresholds()


def _blob(h=24, w=32, top=5, left=6, bh=10, bw=12):
    m = np.zeros((h, w), bool)
    m[top:top + bh, left:left + bw] = True
    return m


def _soft_map(gt, seed=0):
    rng = np.random.default_rng(seed)
    x = np.where(gt, 180, 40) + rng.integers(-40, 60, gt.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def test_evaluate_image_binary_prediction_by_hand():
    gt = np.array([[255, 255, 0, 0]], dtype=np.uint8)
    pred = np.array([[255, 0, 255, 0]], dtype=np.uint8)
    r = evaluate_image(pred, gt)
    # y = {0, 1}: at every t > 0, TP 1, Pn 2 -> Dice .5, IoU 1/3; at t = 0 everything: Dice 2*2/(2+4).
    assert np.all(r.curves["dice"][:-1] == 0.5) and r.curves["dice"][-1] == 4 / 6
    assert np.all(r.curves["iou"][:-1] == 1 / 3) and r.curves["iou"][-1] == 0.5
    assert r.mae == 0.5
    assert (r.dice_half, r.iou_half) == (0.5, 1 / 3)
    assert not r.resized and not r.empty_gt


def test_constant_map_is_not_stretched():
    gt = np.array([[255, 0], [0, 0]], dtype=np.uint8)
    r = evaluate_image(np.full((2, 2), 128, np.uint8), gt)
    assert r.mae == pytest.approx(((1 - 128 / 255) + 3 * (128 / 255)) / 4, abs=1e-15)
    assert r.curves["dice"][T > 128 / 255].max() == 0  # nothing reaches thresholds above 128/255


def test_mapminmax_ulp_fails_threshold_one_in_pipeline():
    gt = np.array([[255, 0, 0]], dtype=np.uint8)
    r = evaluate_image(np.array([[9, 0, 0]], dtype=np.uint8), gt)
    assert r.curves["dice"][0] == 0.0  # max maps to 1 - 2^-53 < 1
    assert r.curves["dice"][1] == 1.0


def test_aggregate_nan_semantics_for_full_gt():
    normal_gt = np.array([[255, 0, 0, 0]], np.uint8)
    normal_pred = np.array([[255, 0, 0, 0]], np.uint8)  # Spe = 1 wherever TP > 0
    full = evaluate_image(np.full((1, 4), 100, np.uint8), np.full((1, 4), 255, np.uint8))
    res = aggregate([evaluate_image(normal_pred, normal_gt), full])
    assert math.isnan(res["meanSpe"])
    # Above 100/255 the full-GT image has TP = 0 -> Spe 0; the other has Spe 1: mean .5.
    assert res["maxSpe"] == 0.5
    assert set(TOOLBOX_KEYS) <= set(res) and res["n_images"] == 2


def test_empty_gt_conventions():
    gt = np.zeros((4, 4), np.uint8)
    r_empty_pred = evaluate_image(np.zeros((4, 4), np.uint8), gt)
    assert r_empty_pred.empty_gt and r_empty_pred.wfm == 0.0
    assert (r_empty_pred.dice_half, r_empty_pred.iou_half, r_empty_pred.hd95) == (1.0, 1.0, 0.0)
    assert np.all(r_empty_pred.curves["dice"] == 0)  # toolbox: TP = 0 -> 0
    assert r_empty_pred.sm == 1.0
    pred = np.zeros((4, 4), np.uint8)
    pred[1, 1] = 255
    r = evaluate_image(pred, gt)
    assert r.dice_half == 0.0 and math.isnan(r.hd95)
    res = aggregate([r, r_empty_pred])
    assert res["hd95"] == 0.0 and res["hd95_undefined"] == 1 and res["n_empty_gt"] == 2


def test_hd95_by_hand():
    from decseg.metrics.extras import hd95
    a = np.zeros((10, 10), bool)
    a[2:5, 2:5] = True
    b = np.zeros((10, 10), bool)
    b[2:5, 5:8] = True  # same square moved 3 columns right
    # Boundaries are the 8 outer pixels of each 3x3 square; directed distances by brute force.
    bp = [(r, c) for r in range(2, 5) for c in range(2, 5) if (r, c) != (3, 3)]
    bg = [(r, c) for r in range(2, 5) for c in range(5, 8) if (r, c) != (3, 6)]
    d_ab = [min(math.dist(p, q) for q in bg) for p in bp]
    d_ba = [min(math.dist(p, q) for q in bp) for p in bg]
    expected = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    assert hd95(a, b) == pytest.approx(expected, abs=1e-12)
    assert hd95(a, a) == 0.0


def test_binary_mean_dice_equals_full_pipeline():
    gt = _blob()
    for pred in (_blob(left=9), np.zeros_like(gt), np.ones_like(gt), _blob(top=15, left=20, bh=5, bw=5)):
        full = aggregate([evaluate_image(pred.astype(np.uint8) * 255, gt.astype(np.uint8) * 255)])["meanDic"]
        assert binary_mean_dice(pred, gt) == full
    # Empty GT: TP is 0 at every threshold.
    assert binary_mean_dice(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 0.0
    with pytest.raises(ValueError):
        binary_mean_dice(np.zeros((2, 3), bool), np.zeros((3, 2), bool))


def test_resize_uses_matlab_imresize_and_warns(tmp_path):
    gt = _blob(h=24, w=32)
    small = _soft_map(gt)[::2, ::2].copy()  # 12 x 16
    r = evaluate_image(small, gt.astype(np.uint8) * 255, name="case.png")
    same = evaluate_image(imresize(small, gt.shape), gt.astype(np.uint8) * 255)
    assert r.resized and "case.png" in r.warnings[0]
    np.testing.assert_array_equal(r.curves["dice"], same.curves["dice"])
    assert r.sm == same.sm and r.wfm == same.wfm


def test_integer_arrays_take_the_smallest_image_class():
    gt = _blob().astype(np.uint8) * 255
    pred = _soft_map(gt > 0)
    assert evaluate_image(pred.astype(np.int64), gt).sm == evaluate_image(pred, gt).sm


def test_prediction_uses_first_channel_only():
    gt = _blob().astype(np.uint8) * 255
    grey = _soft_map(gt > 0)
    rgb = np.stack([grey, np.zeros_like(grey), np.full_like(grey, 255)], axis=2)
    assert evaluate_image(rgb, gt).sm == evaluate_image(grey, gt).sm


# ----------------------------------------------------------------------------- files
def _write_set(root, n=4, size=(24, 32), seed=0):
    (root / "masks").mkdir(parents=True)
    preds = root.parent.parent / "pred" / root.name
    preds.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        gt = _blob(*size, top=3 + i, left=4 + 2 * i)
        Image.fromarray(gt.astype(np.uint8) * 255).save(root / "masks" / f"im{i}.png")
        Image.fromarray(_soft_map(gt, seed + i)).save(preds / f"im{i}.png")
    return preds


def test_gt_file_formats_read_like_imread(tmp_path):
    gt = _blob()
    grey = gt.astype(np.uint8) * 255
    Image.fromarray(grey).convert("1").save(tmp_path / "one_bit.png")
    arr, notes = read_gt(tmp_path / "one_bit.png")
    assert arr.dtype == np.bool_ and np.array_equal(arr, gt) and not notes
    rgb = np.stack([grey] * 3, axis=2)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray((gt.astype(np.uint16) * 65535)).save(tmp_path / "g16.png")
    tifffile.imwrite(tmp_path / "m.tif", grey)
    for name in ("rgb.png", "g16.png", "m.tif"):
        arr, _ = read_gt(tmp_path / name)
        r = evaluate_image(grey, arr)
        assert r.curves["dice"][0] == 1.0, name
    assert read_gt(tmp_path / "g16.png")[0].dtype == np.uint16
    Image.fromarray(gt.astype(np.uint8)).save(tmp_path / "label01.png")
    r = evaluate_image(grey, read_gt(tmp_path / "label01.png")[0], name="label01.png")
    assert r.empty_gt and "0/1 label mask" in r.warnings[0]
    pal = Image.fromarray(gt.astype(np.uint8), mode="L").convert("P")
    pal.save(tmp_path / "pal.png")
    assert any("palette" in n for n in read_gt(tmp_path / "pal.png")[1])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        read_prediction(tmp_path / "broken.png")


def test_folder_evaluation_missing_unmatched_and_workers(tmp_path):
    preds = _write_set(tmp_path / "test" / "SetA", n=9)  # enough images for the process pool
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = evaluate_folder(preds, tmp_path / "test" / "SetA" / "masks", workers=1)
    two = evaluate_folder(preds, tmp_path / "test" / "SetA" / "masks", workers=2)
    assert one == two and one["n_images"] == 9
    # The folder result is the aggregate of the per-image records.
    recs = evaluate_records(preds, tmp_path / "test" / "SetA" / "masks", workers=1)
    assert aggregate(recs) == one and [r.name for r in recs] == [f"im{i}.png" for i in range(9)]
    Image.fromarray(np.zeros((24, 32), np.uint8)).save(preds / "extra.png")
    with pytest.warns(EvaluationWarning, match="extra.png"):
        evaluate_folder(preds, tmp_path / "test" / "SetA" / "masks", workers=1)
    (preds / "im2.png").unlink()
    with pytest.raises(DataError, match="im2.png"):
        evaluate_folder(preds, tmp_path / "test" / "SetA" / "masks", workers=1)


def test_evaluate_sets_layouts(tmp_path):
    pa = _write_set(tmp_path / "test" / "SetA")
    _write_set(tmp_path / "test" / "SetB", n=2, seed=5)
    res = evaluate_sets(tmp_path / "pred", tmp_path / "test", workers=1)
    assert list(res) == ["SetA", "SetB"] and res["SetB"]["n_images"] == 2
    # One set given by its mask folder or its set folder, predictions in PRED or PRED/SET.
    assert evaluate_sets(tmp_path / "pred", tmp_path / "test" / "SetA" / "masks", 1) == {"SetA": res["SetA"]}
    assert evaluate_sets(pa, tmp_path / "test" / "SetA", 1) == {"SetA": res["SetA"]}
    with pytest.raises(DataError, match="nowhere"):
        evaluate_sets(tmp_path / "pred", tmp_path / "nowhere", 1)
