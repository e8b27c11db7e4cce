"""``decseg prepare volumes`` on NIfTI and NRRD trees written by the tests."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel
import nrrd
import numpy as np
import pytest
import yaml
from PIL import Image

from decseg.data.layout import DatasetLayout
from decseg.data.prepare import prepare_volume_dataset

SHAPE = (32, 28, 6)  # X, Y, Z: slices are 32 x 28 along the last axis
AFFINE = np.diag([1.25, 1.25, 4.0, 1.0])


def case_arrays(seed: int, classes: int = 3, empty: tuple[int, ...] = (0, 5)) -> tuple[np.ndarray, np.ndarray]:
    """A 12-bit image and a label volume whose slices ``empty`` have no foreground."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 4096, SHAPE).astype(np.int16)
    label = np.zeros(SHAPE, np.uint8)
    for z in range(SHAPE[2]):
        if z in empty:
            continue
        for k in range(1, classes):
            x, y = rng.integers(2, 20, 2)
            label[x:x + 6, y:y + 5, z] = k
    return image, label


def write_nifti_tree(root: Path, n: int, classes: int = 3, tests: int = 0) -> dict[str, np.ndarray]:
    labels = {}
    for i in range(n + tests):
        base = root if i < n else root / "test" / "heldout"
        (base / "images").mkdir(parents=True, exist_ok=True)
        (base / "labels").mkdir(parents=True, exist_ok=True)
        image, label = case_arrays(i, classes)
        vid = f"case{i:02d}"
        nibabel.save(nibabel.Nifti1Image(image, AFFINE), str(base / "images" / f"{vid}.nii.gz"))
        nibabel.save(nibabel.Nifti1Image(label, AFFINE), str(base / "labels" / f"{vid}.nii.gz"))
        labels[vid] = label
    return labels


def run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "decseg", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def stacked(out: Path, split: str, vid: str) -> np.ndarray:
    rec = json.loads((out / split / "volumes.json").read_text())["volumes"][vid]
    masks = [np.array(Image.open(out / split / "masks" / f"{s}.png")) for s in rec["slices"]]
    return np.stack(masks, axis=rec["axis"])


def test_nifti_tree_cli(tmp_path, subprocess_env):
    src, out = tmp_path / "src", tmp_path / "data"
    labels = write_nifti_tree(src, 10)
    r = run_cli(["prepare", "volumes", "--src", str(src), "--out", str(out), "--labeled", "3", "--val", "2",
                 "--test", "2", "--seed", "5"], subprocess_env)
    assert r.returncode == 0, r.stderr
    assert "train 36 slices of 6 volumes (18 labeled slices of 3 cases" in r.stdout
    info = yaml.safe_load((out / "dataset.yaml").read_text())
    assert info["classes"] == 3 and info["channels"] == 1 and info["axis"] == 2
    assert info["intensity"]["mode"] == "auto" and "one window per volume" in info["intensity"]["chosen_by"]
    split = json.loads((out / "splits" / "volumes.json").read_text())
    assert len(split["train"]) == 6 and len(split["val"]) == 2 and len(split["test/test"]) == 2
    assert not set(split["train"]) & set(split["val"]) and not set(split["train"]) & set(split["test/test"])
    assert len(split["labeled"]) == 3 and set(split["labeled"]) <= set(split["train"])
    # split by volume: every slice of a volume is in the split of its volume
    lay = DatasetLayout(out)
    assert {i.rsplit("_", 1)[0] for i in lay.labeled_ids} == set(split["labeled"])
    assert len(lay.labeled_ids) == 18 and len(lay.unlabeled_ids) == 18
    val_ids = (out / "splits" / "val.txt").read_text().split()
    assert {i.rsplit("_", 1)[0] for i in val_ids} == set(split["val"])
    # C2: geometry per volume; the test slices stack back into the source label volume
    vols = json.loads((out / "test" / "test" / "volumes.json").read_text())
    assert vols["format"] == 1
    for vid, rec in vols["volumes"].items():
        assert rec["shape"] == list(SHAPE) and rec["spacing"] == [1.25, 1.25, 4.0] and rec["axis"] == 2
        assert np.allclose(rec["affine"], AFFINE) and rec["source"].endswith(f"{vid}.nii.gz")
        assert rec["slices"] == [f"{vid}_{k:03d}" for k in range(6)]
        assert np.array_equal(stacked(out, "test/test", vid), labels[vid])
    # masks are palette PNGs of class indices at native in-plane size; images 8-bit grey
    first = out / "train" / "masks" / f"{split['train'][0]}_001.png"
    assert Image.open(first).mode == "P" and Image.open(first).size == (SHAPE[1], SHAPE[0])
    img = Image.open(out / "train" / "images" / f"{split['train'][0]}_001.png")
    assert img.mode == "L" and np.array(img).max() > 200 and np.array(img).min() < 50


def test_one_window_per_volume(tmp_path):
    """The slices of one volume share the volume's window: a dim slice stays dim."""
    src = tmp_path / "src"
    write_nifti_tree(src, 3)
    image, _ = case_arrays(0)
    image[..., 3] //= 8  # a dark slice
    nibabel.save(nibabel.Nifti1Image(image, AFFINE), str(src / "images" / "case00.nii.gz"))
    out = tmp_path / "d"
    prepare_volume_dataset("volumes", src, out, labeled=1, val=0, test=0, intensity="percentile")
    dark = np.array(Image.open(out / "train" / "images" / "case00_003.png"))
    bright = np.array(Image.open(out / "train" / "images" / "case00_002.png"))
    assert dark.max() < 60 < bright.max()  # a per-slice window would have stretched it to 255


def test_nrrd_tree_axis_and_empty_slices(tmp_path, subprocess_env):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    header = {"space": "left-posterior-superior", "space directions": np.diag([0.9, 0.9, 2.5]),
              "space origin": np.array([0.0, 0.0, 0.0])}
    labels = {}
    for i in range(4):
        image, label = case_arrays(i, classes=2)
        nrrd.write(str(src / "images" / f"p{i}.nrrd"), image.astype(np.float32), header)
        nrrd.write(str(src / "labels" / f"p{i}.nrrd"), label, header)
        labels[f"p{i}"] = label
    # binary labels: 0/255 masks; only foreground slices kept in train (2 of 6 are empty)
    out = tmp_path / "fg"
    r = run_cli(["prepare", "volumes", "--src", str(src), "--out", str(out), "--labeled", "1", "--val", "1",
                 "--test", "1", "--empty-slices", "0"], subprocess_env)
    assert r.returncode == 0, r.stderr
    assert "left out 4 training slice(s) without foreground" in r.stdout
    info = yaml.safe_load((out / "dataset.yaml").read_text())
    assert info["classes"] == 2 and info["empty_slices_dropped"] == 4
    train = json.loads((out / "train" / "volumes.json").read_text())["volumes"]
    for rec in train.values():
        assert rec["indices"] == [1, 2, 3, 4] and rec["slices_total"] == 6 and len(rec["slices"]) == 4
        assert rec["orientation"] == "LPS" and rec["spacing"] == [0.9, 0.9, 2.5]
    for split in ("val", "test/test"):  # val and test keep every slice
        for vid, rec in json.loads((out / split / "volumes.json").read_text())["volumes"].items():
            assert len(rec["slices"]) == 6
            assert np.array_equal(stacked(out, split, vid) // 255, labels[vid])
    mask = np.array(Image.open(next((out / "train" / "masks").glob("*.png"))))
    assert set(np.unique(mask)) <= {0, 255} and mask.max() == 255
    # slicing along axis 0: 32 slices of 28 x 6 each, stacked back along axis 0
    out0 = tmp_path / "ax0"
    prepare_volume_dataset("volumes", src, out0, labeled=1, val=0, test=1, axis=0)
    vid, rec = next(iter(json.loads((out0 / "test" / "test" / "volumes.json").read_text())["volumes"].items()))
    assert rec["axis"] == 0 and len(rec["slices"]) == 32
    assert np.array_equal(stacked(out0, "test/test", vid) // 255, labels[vid])


def test_given_test_set_and_half_empty(tmp_path):
    src = tmp_path / "src"
    write_nifti_tree(src, 6, tests=2)
    out = tmp_path / "d"
    report = prepare_volume_dataset("volumes", src, out, labeled=0.5, val=1, empty_slices=0.5, seed=3)
    assert report["counts"]["volumes"] == {"train": 5, "val": 1, "test/heldout": 2}
    assert report["counts"]["empty_slices_dropped"] == 5  # floor(0.5 x 10) of the 10 empty train slices kept
    assert report["counts"]["labeled_cases"] == 3  # half of the 6 pool cases
    lay = DatasetLayout(out)
    assert lay.test_sets() == ["heldout"] and len(lay.items("heldout")) == 12


@pytest.mark.parametrize("problem, message", [
    ("shape", r"case01\.nii\.gz: label volume has shape \(32, 28, 5\)"),
    ("values", r"case01\.nii\.gz: label values \[7\] are outside 0\.\.2 \(3 classes\)"),
    ("missing", r"case01\.nii\.gz: image volume without a label volume"),
    ("4d", r"case01\.nii\.gz: a 4D volume"),
])
def test_bad_inputs_exit_2(tmp_path, subprocess_env, problem, message):
    src = tmp_path / "src"
    write_nifti_tree(src, 3)
    lab_path = src / "labels" / "case01.nii.gz"
    _, label = case_arrays(1)
    if problem == "shape":
        nibabel.save(nibabel.Nifti1Image(label[..., :5], AFFINE), str(lab_path))
    elif problem == "values":
        label[0, 0, 0] = 7
        nibabel.save(nibabel.Nifti1Image(label, AFFINE), str(lab_path))
    elif problem == "missing":
        lab_path.unlink()
    else:
        nibabel.save(nibabel.Nifti1Image(np.zeros(SHAPE + (2,), np.int16), AFFINE), str(src / "images" / "case01.nii.gz"))
    extra = ["--classes", "3"] if problem == "values" else []
    out = tmp_path / "d"
    r = run_cli(["prepare", "volumes", "--src", str(src), "--out", str(out), "--labeled", "1", "--val", "0",
                 "--test", "0", *extra], subprocess_env)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and re.search(message, r.stderr), r.stderr
    assert not out.exists()
    if problem != "missing":  # --skip-bad leaves the case out and lists it
        r = run_cli(["prepare", "volumes", "--src", str(src), "--out", str(out), "--labeled", "1", "--val", "0",
                     "--test", "0", "--skip-bad", *extra], subprocess_env)
        assert r.returncode == 0, r.stderr
        report = json.loads((out / "prepare_report.json").read_text())
        assert [b["id"] for b in report["bad"]] == ["case01"]


def test_options_of_other_tasks_refused(tmp_path, subprocess_env):
    src = tmp_path / "src"
    write_nifti_tree(src, 2)
    r = run_cli(["prepare", "volumes", "--src", str(src), "--out", str(tmp_path / "a"), "--labeled-cases", "3"],
                subprocess_env)
    assert r.returncode == 2 and "--labeled-cases applies to acdc" in r.stderr
    r = run_cli(["prepare", "folder", "--src", str(src), "--out", str(tmp_path / "b"), "--axis", "0"],
                subprocess_env)
    assert r.returncode == 2 and "--axis applies to the volume tasks" in r.stderr
    r = run_cli(["prepare", "volumes", "--src", str(src), "--out", str(tmp_path / "c"), "--empty-slices", "1.5"],
                subprocess_env)
    assert r.returncode == 2 and "--empty-slices 1.5" in r.stderr
