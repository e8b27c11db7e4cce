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
