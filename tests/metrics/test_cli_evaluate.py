"""``decseg evaluate`` end to end on PNG files written here."""
import csv
import json

import numpy as np
from PIL import Image

from decseg.cli.main import main
from decseg.metrics import TOOLBOX_KEYS, evaluate_folder


def _make_data(root):
    """DATA/test/{Alpha,Beta}/masks and PRED/{Alpha,Beta}; Beta's predictions are half size."""
    rng = np.random.default_rng(0)
    for name, shrink in (("Alpha", 1), ("Beta", 2)):
        masks = root / "data" / "test" / name / "masks"
        preds = root / "pred" / name
        masks.mkdir(parents=True)
        preds.mkdir(parents=True)
        for i in range(3):
            gt = np.zeros((32, 40), np.uint8)
            gt[4 + i:20 + i, 6:26 - i] = 255
            soft = np.clip(gt * 0.7 + rng.integers(0, 70, gt.shape), 0, 255).astype(np.uint8)
            Image.fromarray(gt).save(masks / f"c{i}.png")
            Image.fromarray(soft[::shrink, ::shrink]).save(preds / f"c{i}.png")
    return root / "pred", root / "data" / "test"


def test_cli_evaluate_writes_tables(tmp_path, capsys):
    pred, gt = _make_data(tmp_path)
    out_json, out_csv, out_md = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.md"
    rc = main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json", str(out_json),
               "--csv", str(out_csv), "--md", str(out_md), "--workers", "1"])
    cap = capsys.readouterr()
    assert rc == 0
    assert "Alpha" in cap.out and "Beta" in cap.out and "meanDic" in cap.out
    assert "resized" in cap.err and "c0.png" in cap.err  # Beta's maps are half size
    data = json.loads(out_json.read_text())
    assert list(data) == ["Alpha", "Beta"]
    for keys in data.values():
        assert set(TOOLBOX_KEYS) <= set(keys)
        assert {"dice@0.5", "iou@0.5", "hd95", "n_images"} <= set(keys)
    assert data["Alpha"] == evaluate_folder(pred / "Alpha", gt / "Alpha" / "masks", workers=1)
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["set"] for r in rows] == ["Alpha", "Beta"]
    assert float(rows[0]["meanDic"]) == data["Alpha"]["meanDic"]
    assert out_md.read_text().startswith("| set | meanDic")


def test_cli_evaluate_single_set_and_missing_prediction(tmp_path, capsys):
    pred, gt = _make_data(tmp_path)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt / "Alpha" / "masks"), "--workers", "1"]) == 0
    assert "Alpha" in capsys.readouterr().out
    (pred / "Alpha" / "c1.png").unlink()
    rc = main(["evaluate", "--pred", str(pred / "Alpha"), "--gt", str(gt / "Alpha"), "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "c1.png" in err and "missing" in err
    bad = tmp_path / "pred" / "Beta" / "c0.png"
    bad.write_bytes(b"garbage")
    rc = main(["evaluate", "--pred", str(pred / "Beta"), "--gt", str(gt / "Beta"), "--workers", "1"])
    assert rc == 2 and "c0.png" in capsys.readouterr().err


# ----------------------------------------------------------------------------- K classes, volumes
def _label_set(root, volumes=False):
    """DATA (classes: 4, class names) with test/Heart: three 8x10 slices, one volume if asked."""
    from decseg.labels import write_label_png

    masks, preds = root / "data" / "test" / "Heart" / "masks", root / "pred" / "Heart"
    masks.mkdir(parents=True)
    preds.mkdir(parents=True)
    (root / "data" / "dataset.yaml").write_text("name: t\nchannels: 1\nclasses: 4\nsize: 8\n"
                                               "class_names: [background, RV, Myo, LV]\n")
    for k in range(3):
        gt = np.zeros((8, 10), np.uint8)
        gt[1:4, 1:4], gt[4:7, 2:8], gt[0, 6 + k:9] = 1, 2, 3
        pred = gt.copy()
        pred[1:4, 4] = 1
        write_label_png(masks / f"s{k}.png", gt, 4)
        write_label_png(preds / f"s{k}.png", pred, 4)
    if volumes:
        (masks.parent / "volumes.json").write_text(json.dumps({"format": 1, "volumes": {"case1": {
            "slices": ["s0", "s1", "s2"], "axis": 0, "shape": [3, 8, 10], "spacing": [5.0, 1.5, 1.5],
            "affine": np.eye(4).tolist(), "source": "case1.nii.gz"}}}))
    return root / "pred", root / "data" / "test"


def _decseg(args, env):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "decseg", "evaluate", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_multiclass_table_json_and_hd95_choice(tmp_path, subprocess_env):
    pred, gt = _label_set(tmp_path)
    out = tmp_path / "r.json"
    r = _decseg(["--pred", pred, "--gt", gt, "--json", out, "--hd95", "medpy", "--workers", "1"], subprocess_env)
    assert r.returncode == 0, r.stderr
    assert "HD95_medpy" in r.stdout and all(c in r.stdout for c in ("mean", "RV", "Myo", "LV"))
    res = json.loads(out.read_text())["Heart"]
    assert res["n_images"] == 3 and res["Dice/Myo"] == 1.0 and res["HD95/Myo"] == 0.0
    assert res["Dice/RV"] == 2 * 9 / (9 + 12)  # one extra predicted column of 3 pixels
    assert {"meanDice", "meanIoU", "HD95", "HD95_medpy", "ASD"} <= set(res)


def test_cli_volume_mode_and_its_errors(tmp_path, subprocess_env):
    pred, gt = _label_set(tmp_path, volumes=True)
    out = tmp_path / "r.json"
    r = _decseg(["--pred", pred, "--gt", gt, "--json", out, "--distance-unit", "voxel"], subprocess_env)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())["Heart"]
    assert res["n_volumes"] == 1 and res["distance_unit"] == "voxel" and "volumes" in r.stdout
    r = _decseg(["--pred", pred, "--gt", gt, "--volumes", "off", "--json", out], subprocess_env)
    assert r.returncode == 0 and json.loads(out.read_text())["Heart"]["n_images"] == 3
    (pred / "Heart" / "s1.png").unlink()
    r = _decseg(["--pred", pred, "--gt", gt], subprocess_env)
    assert r.returncode == 2 and "slice 's1' of volume 'case1'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_bad_input_exits_2_with_one_line(tmp_path, subprocess_env):
    pred, gt = _label_set(tmp_path)
    bad = np.zeros((8, 10), np.uint8)
    bad[2, 2] = 9
    Image.fromarray(bad).save(pred / "Heart" / "s2.png")
    r = _decseg(["--pred", pred, "--gt", gt, "--workers", "1"], subprocess_env)
    assert r.returncode == 2 and "s2.png" in r.stderr and "9" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _decseg(["--pred", pred, "--gt", gt, "--classes", "1"], subprocess_env)
    assert r.returncode == 2 and "--classes" in r.stderr
    r = _decseg(["--pred", pred, "--gt", gt, "--volumes", "on"], subprocess_env)
    assert r.returncode == 2 and "volumes.json" in r.stderr


def test_cli_binary_hd95_choice(tmp_path, capsys):
    pred, gt = _make_data(tmp_path)
    out_json = tmp_path / "r.json"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt / "Alpha"), "--hd95", "medpy",
                 "--json", str(out_json), "--workers", "1"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert "hd95_medpy" in header and "hd95" not in header
    res = json.loads(out_json.read_text())["Alpha"]
    assert set(TOOLBOX_KEYS) <= set(res) and 0.0 <= res["hd95_medpy"] <= res["hd95"]
    assert "n_volumes" not in res and "Dice/lesion" not in res  # no volumes.json: per image only
