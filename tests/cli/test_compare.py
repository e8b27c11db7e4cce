"""decseg compare: cells, shared splits, the report's numbers, kill + rerun, locks, subprocess cells."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from decseg.cli.compare_report import mean_std, paired_tests
from decseg.cli.main import main

TINY_CELL = ["train.iterations=2", "train.val_every=2"]
METHODS = ["supervised", "decseg", "full"]
RATIOS = ["0.25", "0.5"]
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def compare_data(tmp_path_factory):
    from decseg.data import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("compare") / "data", n=8, size=64, seed=5,
                            labeled=2, n_val=2, n_test=3)


def _compare_args(data: Path, out: Path, overrides: list[str], methods=METHODS, ratios=RATIOS, seeds=2) -> list[str]:
    return ["compare", "--data", str(data), "--methods", ",".join(methods), "--labeled", ",".join(ratios),
            "--seeds", str(seeds), "--out", str(out), "--set", *overrides, *TINY_CELL]


def _finished(out: Path) -> list[Path]:
    return sorted(out.glob("*/*/seed*/cell.json"))


def test_compare_killed_then_rerun_keeps_finished_cells_and_reports_their_numbers(
        compare_data, tmp_path, tiny_overrides, subprocess_env):
    out = tmp_path / "cmp"
    overrides = [*tiny_overrides, "full:train.batch_labeled=4"]  # METHOD:KEY=VALUE: that method's cells only
    cmd = [sys.executable, "-m", "decseg", *_compare_args(compare_data, out, overrides)]
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, env=subprocess_env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while len(_finished(out)) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    first = {p.parent: (p.stat().st_mtime_ns, (p.parent / "checkpoints" / "best.pt").stat().st_mtime_ns)
             for p in _finished(out)}
    assert 3 <= len(first) < 10, (tmp_path / "first.log").read_text()[-2000:]

    rerun = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"compare: 10 cells in {out} ({len(first)} finished" in rerun.stderr
    cells = _finished(out)
    assert len(cells) == 10  # 2 methods x 2 ratios x 2 seeds + full x 2 seeds
    for cell, (mtime, best_mtime) in first.items():  # finished cells were not touched again
        assert (cell / "cell.json").stat().st_mtime_ns == mtime
        assert (cell / "checkpoints" / "best.pt").stat().st_mtime_ns == best_mtime

    # one split file per ratio and seed, drawn from the training pool, shared by every method
    for ratio in RATIOS:
        for seed in SEEDS:
            split = out / "splits" / ratio / f"seed{seed}"
            labeled = (split / "labeled.txt").read_text().split()
            assert len(labeled) == math.floor(float(ratio) * 8)
            assert set(labeled).isdisjoint((split / "unlabeled.txt").read_text().split())
            for method in ("supervised", "decseg"):
                cell = out / method / ratio / f"seed{seed}"
                stored = yaml.safe_load((cell / "config.yaml").read_text())
                assert stored["data"]["splits"] == str(split.resolve())
                assert stored["train"]["seed"] == seed and stored["train"]["method"] == method
    assert (out / "splits" / "0.25" / "seed0" / "labeled.txt").read_text() != \
        (out / "splits" / "0.25" / "seed1" / "labeled.txt").read_text()
    full = yaml.safe_load((out / "full" / "all" / "seed0" / "config.yaml").read_text())
    assert full["train"]["method"] == "supervised" and full["train"]["semi"] is False
    assert full["train"]["batch_labeled"] == 4
    assert yaml.safe_load((out / "supervised" / "0.5" / "seed0" / "config.yaml").read_text())["train"]["batch_labeled"] == 2
    assert len((out / "splits" / "all" / "labeled.txt").read_text().split()) == 8

    # the report's numbers are the cells' numbers: mean and sample std over seeds
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    records = {(r["method"], r["ratio"], r["seed"]): r for r in map(lambda p: json.loads(p.read_text()), cells)}
    rows = {(r["method"], r["ratio"]): r for r in results["summary"]["synth-test"]}
    for method in METHODS:
        for ratio in (["all"] if method == "full" else RATIOS):
            dice = [records[(method, ratio, s)]["metrics"]["synth-test"]["meanDic"] for s in SEEDS]
            iou = [records[(method, ratio, s)]["metrics"]["synth-test"]["meanIoU"] for s in SEEDS]
            row = rows[(method, ratio)]
            assert row["n"] == 2
            assert row["Dice"]["mean"] == pytest.approx(np.mean(dice), abs=1e-12)
            assert row["Dice"]["std"] == pytest.approx(np.std(dice, ddof=1), abs=1e-12)
            labels = f"{ratio} ({records[(method, ratio, 0)]['labeled']}" if method != "full" else "all (8)"
            line = (f"| {labels}{' images)' if method != 'full' else ''} | {method} | 2 | "
                    f"{np.mean(dice):.4f} ± {np.std(dice, ddof=1):.4f} | {np.mean(iou):.4f} ± {np.std(iou, ddof=1):.4f} |")
            assert line in report
    assert "n < 3: not meaningful" in report
    for method in METHODS:  # cost from each cell's train_stats.json
        assert results["cost"][method]["iteration_seconds"] > 0
        assert f"| {method} | {results['cost'][method]['iteration_seconds']:.3f} |" in report
    png = np.asarray(Image.open(out / "dice_vs_labels_synth-test.png"))
    assert png.ndim == 3 and min(png.shape[:2]) > 200 and png.std() > 0
    assert "](dice_vs_labels_synth-test.png)" in report

    # a cell is an ordinary run: decseg train --resume continues it
    cell = out / "decseg" / "0.5" / "seed1"
    assert main(["train", "--data", str(compare_data), "--out", str(cell), "--resume",
                 "--set", "train.iterations=3"]) == 0
    assert json.loads((cell / "train_stats.json").read_text())["iteration"] == 3

    # a rerun with other settings refuses the finished cells instead of mixing them
    assert main(_compare_args(compare_data, out, [*overrides, "train.lr=0.02"])) == 2
    assert main(_compare_args(compare_data, out, [*overrides, "fixmatch:train.lr=0.02"])) == 2  # not in --methods


def test_cell_held_by_a_live_run_is_skipped_and_reported(compare_data, tmp_path, tiny_overrides, capsys):
    from decseg.train.run_lock import RunLock

    out = tmp_path / "locked"
    cell = out / "supervised" / "0.5" / "seed0"
    args = _compare_args(compare_data, out, tiny_overrides, methods=["supervised"], ratios=["0.5"], seeds=1)
    with RunLock.acquire(cell):
        assert main(args) == 2
    err = capsys.readouterr().err
    assert "skipped supervised/0.5/seed0" in err and "in use by another decseg train" in err
    assert "missing: supervised/0.5/seed0" in (out / "report.md").read_text()
    assert main(args) == 0  # the lock is gone: the cell trains now
    assert (cell / "cell.json").is_file()
    moved = tmp_path / "moved"
    out.rename(moved)  # a moved comparison continues: its split files, not their path, are checked
    assert main([str(moved) if a == str(out) else a for a in args]) == 0
    assert "(1 finished, 0 to resume, 0 to evaluate, 0 new)" in capsys.readouterr().err


def test_gpu_queue_runs_cells_as_subprocesses(compare_data, tmp_path, tiny_overrides, subprocess_env):
    """--gpus: one decseg train subprocess per listed device (CUDA_VISIBLE_DEVICES); here on the CPU."""
    out = tmp_path / "queue"
    cmd = [sys.executable, "-m", "decseg",
           *_compare_args(compare_data, out, tiny_overrides, methods=["supervised"], ratios=["0.5"]),
           "--gpus", "0,1"]
    run = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "on GPU 0" in run.stderr and "on GPU 1" in run.stderr
    for seed in SEEDS:
        cell = out / "supervised" / "0.5" / f"seed{seed}"
        assert json.loads((cell / "cell.json").read_text())["metrics"]["synth-test"]["n_images"] == 3
        assert "$ " in (out / "logs" / f"supervised_0.5_seed{seed}.log").read_text()


def test_nproc_per_cell_trains_a_cell_under_torchrun(compare_data, tmp_path, tiny_overrides, subprocess_env):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "decseg",
           *_compare_args(compare_data, out, tiny_overrides, methods=["supervised"], ratios=["0.5"], seeds=1),
           "--nproc-per-cell", "2"]
    run = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((out / "supervised" / "0.5" / "seed0" / "cell.json").read_text())
    assert record["train_stats"]["world_size"] == 2
    assert "torch.distributed.run" in (out / "logs" / "supervised_0.5_seed0.log").read_text()


def test_paired_test_and_std_by_hand():
    # sample std of (1, 2, 4): mean 7/3, squared deviations 16/9 + 1/9 + 25/9 = 42/9, / 2 -> sqrt(7/3)
    mean, std = mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3) and std == pytest.approx(math.sqrt(7 / 3))
    assert math.isnan(mean_std([0.5])[1])
    ref = {0: 0.50, 1: 0.60, 2: 0.70}
    new = {0: 0.55, 1: 0.68, 2: 0.76}
    summary = {"s": [{"method": "a", "ratio": "0.1", "Dice": {"values": ref}},
                     {"method": "b", "ratio": "0.1", "Dice": {"values": new}}]}
    (test,) = paired_tests(summary, ["a", "b"], ["0.1"])["s"]
    diffs = np.array([0.05, 0.08, 0.06])
    t = diffs.mean() / (diffs.std(ddof=1) / math.sqrt(3))  # 7.18...
    from scipy import stats

    assert test["n"] == 3 and test["meaningful"]
    assert test["mean_difference"] == pytest.approx(diffs.mean())
    assert test["t"] == pytest.approx(t) and test["p"] == pytest.approx(2 * stats.t.sf(t, df=2))


def test_data_splits_folder_replaces_the_datasets_splits(compare_data, tmp_path):
    from decseg.data import DatasetLayout
    from decseg.errors import DataError

    folder = tmp_path / "split"
    folder.mkdir()
    ids = DatasetLayout(compare_data).train_ids()
    (folder / "labeled.txt").write_text(ids[0] + "\n" + ids[1] + "\n")
    (folder / "unlabeled.txt").write_text("\n".join(ids[2:]) + "\n")
    layout = DatasetLayout(compare_data, splits=folder)
    assert layout.labeled_ids == ids[:2] and layout.unlabeled_ids == ids[2:]
    with pytest.raises(DataError, match="data.splits folder"):
        DatasetLayout(compare_data, splits=tmp_path / "missing")


def test_slices_of_a_volume_are_labeled_together(compare_data, tmp_path):
    import shutil

    from decseg.cli.compare import parse_ratios, write_splits
    from decseg.data import DatasetLayout

    data = tmp_path / "vol"
    shutil.copytree(compare_data, data)
    ids = DatasetLayout(data).train_ids()  # 8 slices: 4 volumes of 2, two of them one patient
    volumes = {f"v{k}": {"slices": ids[2 * k:2 * k + 2], "axis": 2} for k in range(4)}
    volumes["v0"]["group"] = volumes["v1"]["group"] = "patient0"
    (data / "train" / "volumes.json").write_text(json.dumps({"format": 1, "volumes": volumes}))
    infos = write_splits(DatasetLayout(data), tmp_path / "out", parse_ratios("0.34,1"), [0, 1], with_full=False)
    units = [set(ids[:4]), set(ids[4:6]), set(ids[6:])]  # patient0, v2, v3
    for seed in (0, 1):
        labeled = set((tmp_path / "out" / "splits" / "0.34" / f"seed{seed}" / "labeled.txt").read_text().split())
        assert labeled in units  # floor(0.34 * 3 units) = 1 unit, whole
        info = infos[("0.34", seed)]
        assert info["unit"] == "volume" and info["labeled_units"] == 1 and info["units"] == 3
        assert len((tmp_path / "out" / "splits" / "1" / f"seed{seed}" / "labeled.txt").read_text().split()) in (2, 4)


@pytest.mark.parametrize("change, message", [
    (["--methods", "supervised,nope"], "'nope' is not one of"),
    (["--labeled", "0"], "every ratio needs labeled images"),
    (["--labeled", "0.5,0.5"], "lists a ratio twice"),
    (["--gpus", "0,1,2", "--nproc-per-cell", "2"], "do not split into cells"),
    (["--set", "train.seed=3"], "compare sets train.seed itself"),
    (["--set", "decseg:train.lr=0.1"], "'decseg' is not one of --methods"),
])
def test_bad_arguments_are_one_line_errors(compare_data, tmp_path, tiny_overrides, capsys, change, message):
    args = _compare_args(compare_data, tmp_path / "bad", tiny_overrides, methods=["supervised"], ratios=["0.5"])
    for i in range(0, len(change), 2):
        flag, value = change[i], change[i + 1]
        if flag in args and flag != "--set":
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("decseg compare: error:")
    assert not list((tmp_path / "bad").glob("*/*/seed*/checkpoints"))
