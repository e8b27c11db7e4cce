"""decseg demo --quick: every stage runs and the report has its table, its verdict and pictures."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from decseg.cli.main import main


def test_quick_demo_writes_report_with_table_curves_and_grid(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert str(out / "report.md") in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert "| metric | supervised baseline | DEC-Seg | fully supervised |" in report
    assert "On `synth-test`, DEC-Seg reaches" in report and "fully supervised upper bound (12 labels instead of 3)" in report
    for key in ("meanDic", "meanIoU", "wFm", "Sm", "meanEm", "MAE", "maxDice", "dice@0.5"):
        assert f"| {key}" in report
    assert "![loss and validation curves](curves.png)" in report and "![prediction grid](grid.png)" in report
    for png in ("curves.png", "grid.png"):
        pic = np.asarray(Image.open(out / png))
        assert pic.ndim == 3 and min(pic.shape[:2]) > 100 and pic.std() > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"supervised", "decseg", "full"}
    assert all(0 <= sets["synth-test"]["meanDic"] <= 1 for sets in metrics.values())
    # the cells of decseg compare: one shared split for the baseline and DEC-Seg, all labels for the bound
    for method, ratio in (("supervised", "0.25"), ("decseg", "0.25"), ("full", "all")):
        cell = out / "runs" / method / ratio / "seed1337"
        assert (cell / "checkpoints" / "best.pt").is_file()
        assert len(list((cell / "pred" / "synth-test").glob("*.png"))) == 4
        assert json.loads((cell / "cell.json").read_text())["metrics"] == metrics[method]
    assert len((out / "runs" / "splits" / "0.25" / "seed1337" / "labeled.txt").read_text().split()) == 3
    assert (out / "runs" / "report.md").is_file()

    # a second run into the same folder needs --overwrite, and then replaces only the demo's files
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
