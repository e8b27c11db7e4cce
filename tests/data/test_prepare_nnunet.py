"""``decseg prepare nnunet`` on fake nnU-Net v2 raw datasets (3D NIfTI and 2D PNG)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest
import yaml
from PIL import Image

from decseg.data.layout import DatasetLayout
from decseg.data.prepare import prepare_volume_dataset

AFFINE = np.diag([0.8, 0.8, 3.0, 1.0])
SHAPE = (24, 20, 5)


def nnunet_3d(root: Path, channels: dict[str, str], n: int = 5, labels: dict | None = None) -> Path:
    src = root / "Dataset042_Fake"
    (src / "imagesTr").mkdir(parents=True)
    (src / "labelsTr").mkdir()
    (src / "imagesTs").mkdir()
    labels = labels or {"background": 0, "PZ": 1, "TZ": 2}
    for i in range(n):
        rng = np.random.default_rng(i)
        case = f"fake_{i:03d}"
        for c in channels:
            image = rng.normal(40 * int(c), 300, SHAPE).astype(np.float32)
            nibabel.save(nibabel.Nifti1Image(image, AFFINE), str(src / "imagesTr" / f"{case}_{int(c):04d}.nii.gz"))
        label = np.zeros(SHAPE, np.uint8)
        label[3:9, 3:9, 1:4] = 1
        label[12:18, 10:16, 2:] = 2
        nibabel.save(nibabel.Nifti1Image(label, AFFINE), str(src / "labelsTr" / f"{case}.nii.gz"))
    nibabel.save(nibabel.Nifti1Image(np.zeros(SHAPE, np.float32), AFFINE), str(src / "imagesTs" / "t_000_0000.nii.gz"))
    info = {"channel_names": channels, "labels": labels, "numTraining": n, "file_ending": ".nii.gz"}
    (src / "dataset.json").write_text(json.dumps(info))
    return src


def run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "decseg", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_3d_two_channels(tmp_path, subprocess_env):
    src, out = nnunet_3d(tmp_path, {"0": "T2", "1": "ADC"}), tmp_path / "data"
    r = run_cli(["prepare", "nnunet", "--src", str(src), "--out", str(out), "--labeled", "1", "--val", "1",
                 "--test", "1"], subprocess_env)
    assert r.returncode == 0, r.stderr
    info = yaml.safe_load((out / "dataset.yaml").read_text())
    assert info["classes"] == 3 and info["class_names"] == ["background", "PZ", "TZ"]
    assert info["channels"] == 3 and info["channel_names"] == ["T2", "ADC"]  # two channels + a zero third
    assert len(info["intensity_per_channel"]) == 2
    lay = DatasetLayout(out)
    assert len(lay.labeled_ids) == 5 and len(lay.unlabeled_ids) == 10 and lay.test_sets() == ["test"]
    rgb = np.array(Image.open(lay.items("train")[0].image))
    assert rgb.shape == (24, 20, 3) and rgb[..., 2].max() == 0 and rgb[..., 1].max() > 0
    report = json.loads((out / "prepare_report.json").read_text())
    assert any("imagesTs" in i for i in report["ignored"])
    vols = json.loads((out / "test" / "test" / "volumes.json").read_text())["volumes"]
    assert len(vols) == 1 and next(iter(vols.values()))["spacing"] == pytest.approx([0.8, 0.8, 3.0])


def test_ct_channel_gets_one_dataset_window(tmp_path):
    src, out = nnunet_3d(tmp_path, {"0": "CT"}), tmp_path / "data"
    prepare_volume_dataset("nnunet", src, out, labeled=2, val=0, test=0)
    info = yaml.safe_load((out / "dataset.yaml").read_text())
    # nnU-Net's CT rule: the 0.5 / 99.5 percentiles of the training foreground voxels
    fg = []
    for i in range(5):
        img = np.asanyarray(nibabel.load(str(src / "imagesTr" / f"fake_{i:03d}_0000.nii.gz")).dataobj)
        lab = np.asanyarray(nibabel.load(str(src / "labelsTr" / f"fake_{i:03d}.nii.gz")).dataobj)
        fg.append(img[lab > 0].astype(np.float64))
    low, high = np.percentile(np.concatenate(fg), [0.5, 99.5])
    assert info["intensity"]["mode"] == "window"
    assert info["intensity"]["low"] == pytest.approx(low) and info["intensity"]["high"] == pytest.approx(high)
    assert "foreground voxels" in info["intensity"]["chosen_by"]


def test_2d_png_dataset(tmp_path):
    src = tmp_path / "Dataset120_Road"
    (src / "imagesTr").mkdir(parents=True)
    (src / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(src / "imagesTr" / f"r{i}_0000.png")
        label = np.zeros((30, 40), np.uint8)
        label[5:15, 5:25] = 1
        Image.fromarray(label).save(src / "labelsTr" / f"r{i}.png")
    (src / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "road": 1},
        "numTraining": 6, "file_ending": ".png"}))
    out = tmp_path / "data"
    prepare_volume_dataset("nnunet", src, out, labeled=2, val=1, test=1)
    info = yaml.safe_load((out / "dataset.yaml").read_text())
    assert (info["channels"], info["classes"], info["class_names"]) == (3, 2, ["background", "road"])
    assert not (out / "train" / "volumes.json").exists()  # 2D images: nothing to stack
    lay = DatasetLayout(out)
    item = lay.items("train")[0]
    src_id = item.id.rsplit("_", 1)[0]
    assert np.array_equal(np.array(Image.open(item.image)), np.array(Image.open(src / "imagesTr" / f"{src_id}_0000.png")))
    assert set(np.unique(np.array(Image.open(item.mask)))) == {0, 255}  # binary: 0/255 masks


@pytest.mark.parametrize("problem, named, message", [
    ("numTraining", "dataset.json", r"numTraining is 9 but imagesTr holds 5 case"),
    ("channel", "fake_002_0001.nii.gz", r"missing; .*dataset.json declares 2 channel"),
    ("label", "fake_001.nii.gz", r"label values \[5\] are outside 0\.\.2 .*dataset.json declares 3 labels"),
    ("ending", "fake_000_0000.nii.gz", r"does not end in \.nrrd, the file_ending of .*dataset.json"),
])
def test_disagreeing_dataset_json_exit_2(tmp_path, subprocess_env, problem, named, message):
    src = nnunet_3d(tmp_path, {"0": "T2", "1": "ADC"})
    info = json.loads((src / "dataset.json").read_text())
    if problem == "numTraining":
        info["numTraining"] = 9
    elif problem == "channel":
        (src / "imagesTr" / "fake_002_0001.nii.gz").unlink()
    elif problem == "label":
        label = np.zeros(SHAPE, np.uint8)
        label[0, 0, 0] = 5
        nibabel.save(nibabel.Nifti1Image(label, AFFINE), str(src / "labelsTr" / "fake_001.nii.gz"))
    else:
        info["file_ending"] = ".nrrd"
    (src / "dataset.json").write_text(json.dumps(info))
    out = tmp_path / "data"
    r = run_cli(["prepare", "nnunet", "--src", str(src), "--out", str(out)], subprocess_env)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert named in line and re.search(message, line), line
    assert not out.exists()
