"""K = 4 sets of 2D index PNGs: per-class numbers against hand-computed values, and bad input."""
import math

import numpy as np
import pytest
from PIL import Image

from decseg.errors import DataError
from decseg.labels import write_label_png
from decseg.metrics import dataset_classes, evaluate_set, evaluate_sets
from decseg.metrics.report import format_results

R2 = math.sqrt(2)


def _images():
    """Two 6x8 images of classes 0..3 (RV = 1, Myo = 2, LV = 3), as (GT, prediction).

    a: RV  GT 2x2 block, prediction 2x3 (one extra column): Dice 8/10, IoU 4/6; all pixels are
          boundary, pred -> GT [0 x 4, 1, 1], GT -> pred [0 x 4]: HD95 1 (both definitions),
          ASD 2/6.
       Myo the same 1x4 line in both: 1, 1, 0, 0.
       LV  absent from the GT, one pixel predicted: Dice 0, IoU 0, distances undefined.
    b: RV  absent from both: Dice 1, IoU 1, distances 0.
       Myo GT 3x3 square inside a predicted 5x5 square: Dice 18/34, IoU 9/25, HD95 sqrt 2 (both),
          ASD (12 + 4 sqrt 2)/16.
       LV  GT pixel (0, 7), predicted (0, 6) and (0, 7): Dice 2/3, IoU 1/2; pred -> GT [0, 1],
          GT -> pred [0]: MONAI 0.95, medpy pooled [0, 0, 1] -> 0.9; ASD 1/2.
    """
    ga = np.zeros((6, 8), np.uint8)
    ga[0:2, 0:2] = 1
    ga[4, 0:4] = 2
    pa = ga.copy()
    pa[0:2, 2] = 1
    pa[5, 7] = 3
    gb = np.zeros((6, 8), np.uint8)
    gb[2:5, 2:5] = 2
    gb[0, 7] = 3
    pb = np.zeros((6, 8), np.uint8)
    pb[1:6, 1:6] = 2
    pb[0, 6:8] = 3
    return {"a": (ga, pa), "b": (gb, pb)}


EXPECTED = {
    "Dice/RV": (0.8 + 1) / 2, "IoU/RV": (4 / 6 + 1) / 2, "HD95/RV": 0.5, "HD95_medpy/RV": 0.5,
    "ASD/RV": (2 / 6) / 2, "HD95_undefined/RV": 0, "n_empty_gt/RV": 1,
    "Dice/Myo": (1 + 18 / 34) / 2, "IoU/Myo": (1 + 9 / 25) / 2, "HD95/Myo": R2 / 2,
    "HD95_medpy/Myo": R2 / 2, "ASD/Myo": (12 + 4 * R2) / 16 / 2, "HD95_undefined/Myo": 0, "n_empty_gt/Myo": 0,
    "Dice/LV": (0 + 2 / 3) / 2, "IoU/LV": 0.5 / 2, "HD95/LV": 0.95, "HD95_medpy/LV": 0.9, "ASD/LV": 0.5,
    "HD95_undefined/LV": 1, "n_empty_gt/LV": 1,
}


def _write_set(root, palette_pred=False):
    data = root / "data"
    masks = data / "test" / "Heart" / "masks"
    pred = root / "pred" / "Heart"
    masks.mkdir(parents=True)
    pred.mkdir(parents=True)
    (data / "dataset.yaml").write_text("name: t\nchannels: 1\nclasses: 4\nsize: 8\n"
                                       "class_names: [background, RV, Myo, LV]\n")
    for name, (gt, p) in _images().items():
        write_label_png(masks / f"{name}.png", gt, 4)  # palette PNG of indices
        if palette_pred:
            write_label_png(pred / f"{name}.png", p, 4)
        else:
            Image.fromarray(p).save(pred / f"{name}.png")  # grey index PNG
    return root / "pred", data / "test"


def test_per_class_values_by_hand(tmp_path):
    pred, gt = _write_set(tmp_path)
    assert dataset_classes(gt)[:2] == (4, ["background", "RV", "Myo", "LV"])
    res = evaluate_sets(pred, gt, workers=1)["Heart"]
    for key, value in EXPECTED.items():
        assert res[key] == pytest.approx(value, abs=1e-12), key
    assert res["meanDice"] == pytest.approx(np.mean([EXPECTED[f"Dice/{c}"] for c in ("RV", "Myo", "LV")]))
    assert res["meanIoU"] == pytest.approx(np.mean([EXPECTED[f"IoU/{c}"] for c in ("RV", "Myo", "LV")]))
    assert res["HD95"] == pytest.approx((0.5 + R2 / 2 + 0.95) / 3)
    assert res["HD95_medpy"] == pytest.approx((0.5 + R2 / 2 + 0.9) / 3)
    assert res["ASD"] == pytest.approx((1 / 6 + (12 + 4 * R2) / 32 + 0.5) / 3)
    assert res["n_images"] == 2 and res["distance_unit"] == "pixel"
    assert "meanDic" not in res  # toolbox keys are for binary sets
    table = format_results({"Heart": res}, hd95="medpy")
    assert "HD95_medpy" in table and "Myo" in table and "mean" in table


def test_palette_predictions_read_as_indices(tmp_path):
    pred, gt = _write_set(tmp_path, palette_pred=True)
    res = evaluate_sets(pred, gt, workers=1)["Heart"]
    assert res["Dice/Myo"] == pytest.approx(EXPECTED["Dice/Myo"], abs=1e-12)


def test_classes_override_and_default_names(tmp_path):
    pred, gt = _write_set(tmp_path)
    (tmp_path / "data" / "dataset.yaml").unlink()
    assert dataset_classes(gt)[0] == 2  # no dataset.yaml: binary
    res = evaluate_sets(pred, gt, workers=1, classes=4)["Heart"]
    assert res["Dice/class2"] == pytest.approx(EXPECTED["Dice/Myo"], abs=1e-12)


def test_prediction_value_outside_the_classes(tmp_path):
    pred, gt = _write_set(tmp_path)
    bad = np.zeros((6, 8), np.uint8)
    bad[0, 0] = 7
    Image.fromarray(bad).save(pred / "Heart" / "b.png")
    with pytest.raises(DataError, match=r"b\.png.*7"):
        evaluate_sets(pred, gt, workers=1)


def test_size_mismatch_is_an_error(tmp_path):
    pred, gt = _write_set(tmp_path)
    Image.fromarray(np.zeros((5, 8), np.uint8)).save(pred / "Heart" / "a.png")
    with pytest.raises(DataError, match=r"a\.png.*differs in size"):
        evaluate_set(pred / "Heart", gt / "Heart" / "masks", 4, ["bg", "RV", "Myo", "LV"], workers=1)


def test_gt_coded_as_grey_levels_needs_a_label_map(tmp_path):
    pred, gt = _write_set(tmp_path)
    for name, (g, _) in _images().items():
        Image.fromarray((g * 85).astype(np.uint8)).save(gt / "Heart" / "masks" / f"{name}.png")
    with pytest.raises(DataError, match=r"masks/a\.png.*outside the class indices.*--label-map"):
        evaluate_sets(pred, gt, workers=1)
    res = evaluate_sets(pred, gt, workers=1, label_map={0: 0, 85: 1, 170: 2, 255: 3})["Heart"]
    assert res["Dice/LV"] == pytest.approx(EXPECTED["Dice/LV"], abs=1e-12)
