"""``decseg prepare acdc`` on a fake ACDC tree named as in the committed patient split."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import yaml
from PIL import Image

from decseg import load_config
from decseg.data.layout import DatasetLayout
from decseg.data.prepare.acdc import protocol

# Slices per frame of the official data for the first training patients (half of SSL4MIS's
# train_slices.list count per patient, which holds ED + ES), and one val and one test patient.
FRAMES = {"patient099": 16, "patient038": 8, "patient050": 10, "patient100": 8,
          "patient028": 9, "patient011": 7, "patient101": 6}
AFFINE = np.diag([1.5625, 1.5625, 10.0, 1.0])


def fake_acdc(root: Path) -> Path:
    training = root / "database" / "training"
    for i, (patient, z) in enumerate(FRAMES.items()):
        d = training / patient
        d.mkdir(parents=True)
        ed, es = 1, 10 + i
        (d / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: NOR\nHeight: 170.0\nNbFrame: 30\nWeight: 70.0\n")
        rng = np.random.default_rng(i)
        for frame in (ed, es):
            image = rng.integers(0, 900, (20, 18, z)).astype(np.int16)
            label = np.zeros((20, 18, z), np.uint8)
            label[4:9, 4:9, 1:] = 1
            label[10:13, 3:8, 1:] = 2
            label[12:16, 10:15, 1:] = 3
            name = f"{patient}_frame{frame:02d}"
            nibabel.save(nibabel.Nifti1Image(image, AFFINE), str(d / f"{name}.nii.gz"))
            nibabel.save(nibabel.Nifti1Image(label, AFFINE), str(d / f"{name}_gt.nii.gz"))
        # the 4D cine file of the download is not read
        (d / f"{patient}_4d.nii.gz").write_bytes(b"")
    return root / "database"


def run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "decseg", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_committed_split_is_the_protocol():
    split = protocol()
    train, val, test = split["train"], split["val"], split["test"]
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    assert len(set(train) | set(val) | set(test)) == 100
    assert train[:3] == ["patient099", "patient038", "patient050"]
    counts = [sum(split["train_slices"][p] for p in train[:n]) for n in (1, 3, 7)]
    assert counts == [32, 68, 136] and sum(split["train_slices"].values()) == 1312


def test_acdc_three_labeled_cases(tmp_path, subprocess_env):
    src, out = fake_acdc(tmp_path / "ACDC"), tmp_path / "data"
    r = run_cli(["prepare", "acdc", "--src", str(src), "--out", str(out), "--labeled-cases", "3"], subprocess_env)
    assert r.returncode == 0, r.stderr
    assert "94 of the protocol's 100 patients are missing" in r.stderr
    info = yaml.safe_load((out / "dataset.yaml").read_text())
    assert (info["classes"], info["channels"], info["size"]) == (4, 1, 256)
    assert info["class_names"] == ["background", "RV", "Myo", "LV"]
    assert info["intensity"]["mode"] == "percentile" and info["intensity"]["low"] == 0.5
    lay = DatasetLayout(out)
    # 3 labeled cases: ED + ES of patient099, 038, 050 = 2 x (16 + 8 + 10) = 68 slices, as SSL4MIS
    assert len(lay.labeled_ids) == 68 and len(lay.unlabeled_ids) == 16
    patients = json.loads((out / "splits" / "patients.json").read_text())
    assert patients["labeled"] == ["patient099", "patient038", "patient050"]
    assert patients["val"] == ["patient028"] and patients["test/acdc"] == ["patient011"]
    report = json.loads((out / "prepare_report.json").read_text())
    assert any("patient101" in i for i in report["ignored"])
    vols = json.loads((out / "test" / "acdc" / "volumes.json").read_text())["volumes"]
    assert sorted(vols) == ["patient011_frame01", "patient011_frame15"]
    assert vols["patient011_frame01"]["phase"] == "ED" and vols["patient011_frame15"]["phase"] == "ES"
    assert vols["patient011_frame01"]["spacing"] == [1.5625, 1.5625, 10.0]
    assert vols["patient011_frame01"]["shape"] == [20, 18, 7]
    mask = np.array(Image.open(out / "test" / "acdc" / "masks" / "patient011_frame01_003.png"))
    assert mask.shape == (20, 18) and set(np.unique(mask)) == {0, 1, 2, 3}


def test_acdc_one_case_and_refusals(tmp_path, subprocess_env):
    src = fake_acdc(tmp_path / "ACDC")
    out = tmp_path / "one"
    r = run_cli(["prepare", "acdc", "--src", str(src / "training"), "--out", str(out), "--labeled-cases", "1"],
                subprocess_env)
    assert r.returncode == 0, r.stderr
    assert len(DatasetLayout(out).labeled_ids) == 32
    # 7 cases need patient058, 021, 049, which this tree lacks
    r = run_cli(["prepare", "acdc", "--src", str(src), "--out", str(tmp_path / "seven"), "--labeled-cases", "7"],
                subprocess_env)
    assert r.returncode == 2 and "missing: patient058, patient021, patient049" in r.stderr
    r = run_cli(["prepare", "acdc", "--src", str(src), "--out", str(tmp_path / "x"), "--labeled", "3"],
                subprocess_env)
    assert r.returncode == 2 and "fixed patient split; drop --labeled" in r.stderr
    (src / "training" / "patient028" / "patient028_frame01_gt.nii.gz").unlink()
    r = run_cli(["prepare", "acdc", "--src", str(src), "--out", str(tmp_path / "y"), "--labeled-cases", "3"],
                subprocess_env)
    assert r.returncode == 2 and "patient028_frame01_gt.nii.gz: missing" in r.stderr


def test_acdc_preset():
    cfg = load_config("acdc")
    assert (cfg.data.size, cfg.data.channels, cfg.data.classes) == (256, 1, 4)
    assert (cfg.train.lr, cfg.train.momentum, cfg.train.weight_decay) == (0.01, 0.9, 1e-4)
    assert (cfg.train.batch_labeled, cfg.train.batch_unlabeled, cfg.train.confidence_threshold) == (12, 12, 0.95)
