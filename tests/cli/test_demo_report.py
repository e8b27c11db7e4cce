"""The demo report's pieces: log reading, the metric table, figures."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from decseg.cli.report import metric_table, plot_curves, plot_grid, read_log
from decseg.metrics.extras import overlap_at_half


def test_read_log_splits_training_and_validation_rows_and_skips_a_cut_line(tmp_path):
    log = tmp_path / "log.jsonl"
    rows = [{"iter": 1, "lr": 0.01, "loss": 1.0, "sup": 0.8, "sc": 0, "spc": 0, "cc": 0.2},
            {"iter": 2, "lr": 0.01, "loss": 0.5, "sup": 0.4, "sc": 0, "spc": 0, "cc": 0.1},
            {"iter": 2, "val_dice": 0.3}]
    log.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"iter": 3, "lo')
    train, val = read_log(log)
    assert [r["iter"] for r in train] == [1, 2] and val == [{"iter": 2, "val_dice": 0.3}]
    png = plot_curves({"a": log, "b": log}, tmp_path / "curves.png")
    assert Image.open(png).size[0] > 300


def test_metric_table_bolds_the_better_method_and_lower_mae():
    results = {"baseline": {"s": {"meanDic": 0.5, "MAE": 0.10}}, "DEC-Seg": {"s": {"meanDic": 0.6, "MAE": 0.20}}}
    table = metric_table(results, keys=("meanDic", "MAE"))
    lines = table.splitlines()
    assert lines[0] == "| metric | baseline | DEC-Seg |"
    assert lines[2] == "| meanDic | 0.5000 | **0.6000** |"
    assert lines[3] == "| MAE (lower is better) | **0.1000** | 0.2000 |"


def test_metric_table_writes_missing_and_nan_as_n_a():
    results = {"a": {"s": {"meanDic": float("nan")}}, "b": {"s": {"meanDic": 0.25}}, "c": {"t": {}}}
    lines = metric_table(results, keys=("meanDic",)).splitlines()
    assert lines[0] == "| metric | a (s) | b (s) | c (s) | a (t) | b (t) | c (t) |"
    assert lines[1] == "|---|---:|---:|---:|---:|---:|---:|"
    assert lines[2] == "| meanDic | n/a | 0.2500 | n/a | n/a | n/a | n/a |"  # one finite value: none bold


def test_grid_label_dice_and_grid(tmp_path):
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert overlap_at_half(a, b)[0] == 1.0  # both empty: a correct empty prediction
    a[:2] = True
    b[1:3] = True
    assert overlap_at_half(a, b)[0] == 0.5
    rows = [{"image": np.full((8, 8, 3), 90, np.uint8), "gt": a.astype(np.uint8) * 255, "gt__label": "x"}]
    png = plot_grid(rows, tmp_path / "grid.png", ["image", "gt"])
    assert np.asarray(Image.open(png)).std() > 0


def test_verdict_says_how_much_of_the_gap_to_the_upper_bound_dec_seg_closes():
    from decseg.cli.demo import _verdict

    results = {"supervised": {"s": {"meanDic": 0.50, "dice@0.5": 0.51}},
               "decseg": {"s": {"meanDic": 0.60, "dice@0.5": 0.61}},
               "full": {"s": {"meanDic": 0.70, "dice@0.5": 0.71}}}
    text = _verdict(results, 20, 200)
    assert "DEC-Seg reaches a meanDic +0.100 above the supervised baseline (0.600 vs 0.500" in text
    assert "upper bound (200 labels instead of 20) reaches meanDic 0.700, dice@0.5 0.710" in text
    assert "closes 50% of the gap of 0.200" in text
    results["full"]["s"]["meanDic"] = 0.49  # the bound below the baseline: no gap to close
    assert "is not above the baseline here" in _verdict(results, 20, 200)
    results["decseg"]["s"]["meanDic"] = 0.45
    assert "-0.050 below (worse than)" in _verdict({k: v for k, v in results.items() if k != "full"})
