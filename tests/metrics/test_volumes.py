"""Sets sliced from volumes (volumes.json + PNG slices written here): per-volume 3D metrics with
anisotropic spacing against medpy on the original arrays, the voxel option, binary volume sets,
and errors for missing, extra and misshapen slices."""
import json

import numpy as np
import pytest
from medpy.metric import binary
from PIL import Image
from scipy import ndimage

from decseg.errors import DataError
from decseg.labels import write_label_png
from decseg.metrics import TOOLBOX_KEYS, evaluate_set
from decseg.metrics.surface import hd95_monai

NAMES = ["background", "RV", "Myo", "LV"]
# (id, shape, axis, spacing): two volumes sliced along different axes.
VOLUMES = [("p1", (18, 20, 5), 2, (1.4, 1.4, 10.0)), ("p2", (4, 16, 18), 0, (8.0, 1.2, 0.9))]


def _label_volume(rng, shape):
    """Classes 0..3 from smoothed noise, every class present."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=1.5)
    edges = np.quantile(field, [0.4, 0.6, 0.8])
    return np.digitize(field, edges).astype(np.uint8)


def _write(root, classes=4):
    """DATA/test/Heart/{masks, volumes.json} and PRED/Heart from random label volumes.

    Returns (pred dir, mask dir, {volume id: (pred volume, GT volume, spacing)}).
    """
    rng = np.random.default_rng(7)
    masks = root / "test" / "Heart" / "masks"
    pred_dir = root / "pred" / "Heart"
    masks.mkdir(parents=True)
    pred_dir.mkdir(parents=True)
    entries, arrays = {}, {}
    for vid, shape, axis, spacing in VOLUMES:
        gt = _label_volume(rng, shape)
        pred = gt.copy()
        noise = rng.random(shape) < 0.08
        pred[noise] = rng.integers(0, 4, int(noise.sum()))
        pred = ndimage.median_filter(pred, size=(1, 2, 2))
        if classes == 2:
            gt, pred = (gt == 3).astype(np.uint8), (pred == 3).astype(np.uint8)
        slices = []
        for k in range(shape[axis]):
            sid = f"{vid}_s{k:02d}"
            slices.append(sid)
            g, p = gt.take(k, axis), pred.take(k, axis)
            if classes == 2:
                Image.fromarray(g * 255).save(masks / f"{sid}.png")
                Image.fromarray(p * 255).save(pred_dir / f"{sid}.png")
            else:
                write_label_png(masks / f"{sid}.png", g, classes)
                write_label_png(pred_dir / f"{sid}.png", p, classes)
        entries[vid] = {"slices": slices, "axis": axis, "shape": list(shape), "spacing": list(spacing),
                        "affine": np.diag([*spacing, 1.0]).tolist(), "source": f"{vid}.nii.gz"}
        arrays[vid] = (pred, gt, spacing)
    (masks.parent / "volumes.json").write_text(json.dumps({"format": 1, "volumes": entries}))
    return pred_dir, masks, arrays


def _expected(arrays, classes, spacing_on):
    out = {}
    for c in range(1, classes):
        name = NAMES[c] if classes > 2 else "lesion"
        rows = []
        for pred, gt, spacing in arrays.values():
            p, g = pred == c, gt == c
            assert p.any() and g.any()
            s = spacing if spacing_on else None
            rows.append((binary.dc(p, g), binary.jc(p, g), hd95_monai(p, g, s), binary.hd95(p, g, s),
                         binary.asd(p, g, s)))
        for key, values in zip(("Dice", "IoU", "HD95", "HD95_medpy", "ASD"), zip(*rows)):
            out[f"{key}/{name}"] = float(np.mean(values))
    return out


@pytest.mark.parametrize("unit", ["mm", "voxel"])
def test_per_volume_metrics_match_medpy_on_the_stacked_volumes(tmp_path, unit):
    pred_dir, masks, arrays = _write(tmp_path)
    res = evaluate_set(pred_dir, masks, 4, NAMES, distance_unit=unit, workers=1)
    expected = _expected(arrays, 4, spacing_on=unit == "mm")
    for key, value in expected.items():
        assert res[key] == pytest.approx(value, abs=1e-9), key
    for mean_key, key in (("meanDice", "Dice"), ("HD95_medpy", "HD95_medpy"), ("ASD", "ASD")):
        assert res[mean_key] == pytest.approx(np.mean([expected[f"{key}/{c}"] for c in NAMES[1:]]), abs=1e-9)
    assert res["n_volumes"] == 2 and res["distance_unit"] == unit and "n_images" not in res


def test_mm_and_voxel_differ_and_volume_mode_can_be_turned_off(tmp_path):
    pred_dir, masks, _ = _write(tmp_path)
    mm = evaluate_set(pred_dir, masks, 4, NAMES, workers=1)
    voxel = evaluate_set(pred_dir, masks, 4, NAMES, distance_unit="voxel", workers=1)
    assert mm["meanDice"] == voxel["meanDice"] and mm["HD95_medpy"] != voxel["HD95_medpy"]
    per_image = evaluate_set(pred_dir, masks, 4, NAMES, volumes="off", workers=1)
    assert per_image["n_images"] == 5 + 4 and per_image["distance_unit"] == "pixel"


def test_binary_volume_set_keeps_the_toolbox_keys(tmp_path):
    pred_dir, masks, arrays = _write(tmp_path, classes=2)
    res = evaluate_set(pred_dir, masks, 2, ["background", "lesion"], workers=1)
    assert set(TOOLBOX_KEYS) <= set(res) and res["n_images"] == 9
    for key, value in _expected(arrays, 2, spacing_on=True).items():
        assert res[key] == pytest.approx(value, abs=1e-9), key
    assert res["n_volumes"] == 2 and "meanDice" not in res


def test_missing_and_extra_slices(tmp_path):
    pred_dir, masks, _ = _write(tmp_path)
    (pred_dir / "p2_s01.png").unlink()
    with pytest.raises(DataError, match=r"slice 'p2_s01' of volume 'p2'"):
        evaluate_set(pred_dir, masks, 4, NAMES, workers=1)
    (masks / "p1_s03.png").unlink()
    with pytest.raises(DataError, match=r"slice 'p1_s03' of volume 'p1'.*no mask"):
        evaluate_set(pred_dir, masks, 4, NAMES, workers=1)


def test_extra_and_misshapen_slices(tmp_path):
    pred_dir, masks, _ = _write(tmp_path)
    write_label_png(masks / "stray.png", np.zeros((18, 20), np.uint8), 4)
    with pytest.raises(DataError, match=r"stray\.png: not a slice of any volume"):
        evaluate_set(pred_dir, masks, 4, NAMES, workers=1)
    (masks / "stray.png").unlink()
    write_label_png(masks / "p1_s02.png", np.zeros((18, 19), np.uint8), 4)
    with pytest.raises(DataError, match=r"p1_s02\.png: slice 'p1_s02' of volume 'p1' is 19x18"):
        evaluate_set(pred_dir, masks, 4, NAMES, workers=1)


def test_bad_volumes_json(tmp_path):
    pred_dir, masks, _ = _write(tmp_path)
    vfile = masks.parent / "volumes.json"
    data = json.loads(vfile.read_text())
    data["volumes"]["p1"]["slices"] = data["volumes"]["p1"]["slices"][:-1]
    vfile.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"volume 'p1': lists 4 slices but its shape"):
        evaluate_set(pred_dir, masks, 4, NAMES, workers=1)
    vfile.unlink()
    with pytest.raises(DataError, match=r"--volumes on: .*volumes\.json not found"):
        evaluate_set(pred_dir, masks, 4, NAMES, volumes="on", workers=1)
