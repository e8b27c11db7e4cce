"""``decseg prepare`` on small fake downloads with each benchmark's structure."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from PIL import Image

from decseg.cli.main import main as cli
from decseg.data.layout import DatasetLayout
from decseg.data.prepare import prepare_dataset
from decseg.data.prepare.common import Checked, Pair, _carve
from decseg.data.imageio import read_mask
from decseg.errors import DataError, DecsegError

sys.path.insert(0, str(Path(__file__).parent))
from helpers_data import disk_mask, folder_dataset, pair, rgb, save  # noqa: E402


def ids(path: Path) -> list[str]:
    return path.read_text().split()


def check_splits(out: Path) -> DatasetLayout:
    lay = DatasetLayout(out)
    lab, unl = set(lay.labeled_ids), set(lay.unlabeled_ids)
    assert not lab & unl and lab | unl == set(lay.train_ids())
    val = set(ids(out / "splits" / "val.txt"))
    assert not val & set(lay.train_ids())
    assert val == {p.stem for p in (out / "val" / "images").glob("*")} if val else True
    return lay


def test_polyp_pranet_layout(tmp_path):
    src = tmp_path / "polyp"
    for i in range(40):
        pair(src / "TrainDataset" / "image", src / "TrainDataset" / "mask", f"{i}", seed=i)
    for name, n in (("CVC-300", 3), ("Kvasir", 4), ("CVC-ClinicDB", 2)):
        for i in range(n):
            pair(src / "TestDataset" / name / "images", src / "TestDataset" / name / "masks", f"{i}", seed=50 + i)
    out = tmp_path / "data"
    assert cli(["prepare", "polyp", "--src", str(src), "--out", str(out), "--labeled", "4"]) == 0
    lay = check_splits(out)
    assert lay.test_sets() == ["CVC-300", "CVC-ClinicDB", "Kvasir"]
    assert len(lay.labeled_ids) == 4 and len(ids(out / "splits" / "val.txt")) == 2  # floor(5% of 40)
    assert len(lay.unlabeled_ids) == 40 - 2 - 4
    assert [it.id for it in lay.items("Kvasir")] == ["0", "1", "2", "3"]
    info = yaml.safe_load((out / "dataset.yaml").read_text())
    assert info["size"] == 352 and info["labeled"] == 4 and info["test_sets"]["CVC-300"] == 3


def test_polyp_raw_kvasir_and_clinicdb_tiff(tmp_path):
    src = tmp_path / "raw"
    for i in range(20):
        pair(src / "Kvasir-SEG" / "images", src / "Kvasir-SEG" / "masks", f"k{i:02d}", ext=".jpg",
             mask_ext=".jpg", seed=i)
    clinic = src / "CVC-ClinicDB"
    (clinic / "Original").mkdir(parents=True)
    (clinic / "Ground Truth").mkdir(parents=True)
    for i in range(1, 11):
        tifffile.imwrite(clinic / "Original" / f"{i}.tif", rgb(seed=i), photometric="rgb")
        tifffile.imwrite(clinic / "Ground Truth" / f"{i}.tif", disk_mask().astype(np.uint8) * 255)
    out = tmp_path / "data"
    report = prepare_dataset("polyp", src, out, labeled=0.1, val=0)
    lay = check_splits(out)
    # 90/10 per source: floor(0.9 * 20) = 18 + floor(0.9 * 10) = 9 stay for training.
    assert report["counts"]["test"] == {"Kvasir": 2, "CVC-ClinicDB": 1}
    assert len(lay.train_ids()) == 27 and len(lay.labeled_ids) == 2
    # TIFFs were converted to PNG, JPEGs kept byte for byte.
    train_imgs = {p.stem: p for p in (out / "train" / "images").iterdir()}
    assert all(p.suffix == ".png" for s, p in train_imgs.items() if not s.startswith("k"))
    kv = next(s for s in train_imgs if s.startswith("k"))
    assert train_imgs[kv].read_bytes() == (src / "Kvasir-SEG" / "images" / f"{kv}.jpg").read_bytes()
    assert len(report["converted"]) == 10
    # Masks are 0/255 PNGs.
    m = np.array(Image.open(next((out / "train" / "masks").glob("1*.png"))))
    assert set(np.unique(m)) <= {0, 255} and m.dtype == np.uint8


def test_isic_80_20_count_math():
    items = [Checked(Pair(f"ISIC_{i:07d}", None, None)) for i in range(2594)]
    test, pool = _carve(items, 0.2, 1337, "test", "--test", False)
    assert len(pool) == 2075 and len(test) == 519
    assert not {c.pair.id for c in test} & {c.pair.id for c in pool}


def test_isic_fake_download(tmp_path):
    src = tmp_path / "isic"
    for i in range(30):
        pair(src / "ISIC2018_Task1-2_Training_Input", src / "ISIC2018_Task1_Training_GroundTruth",
             f"ISIC_{i:07d}", ext=".jpg", mask_suffix="_segmentation", seed=i)
    (src / "ISIC2018_Task1-2_Training_Input" / "LICENSE.txt").write_text("license")
    out = tmp_path / "data"
    report = prepare_dataset("isic2018", src, out, labeled=3, val=2, seed=5)
    lay = check_splits(out)
    assert report["counts"]["test"] == {"isic2018": 6} and report["counts"]["train_pool"] == 24
    assert len(lay.labeled_ids) == 3 and len(lay.unlabeled_ids) == 24 - 2 - 3
    assert any("LICENSE.txt" in p for p in report["ignored"])
    # Same seed -> same splits; another seed -> another split.
    prepare_dataset("isic2018", src, tmp_path / "again", labeled=3, val=2, seed=5)
    for f in ("labeled.txt", "unlabeled.txt", "val.txt"):
        assert (out / "splits" / f).read_text() == (tmp_path / "again" / "splits" / f).read_text()
    prepare_dataset("isic2018", src, tmp_path / "other", labeled=3, val=2, seed=6)
    assert (out / "splits" / "labeled.txt").read_text() != (tmp_path / "other" / "splits" / "labeled.txt").read_text()


def make_lgg(src: Path, patients: int = 10, slices: int = 4) -> None:
    for p in range(patients):
        d = src / "kaggle_3m" / f"TCGA_XX_{p:04d}_19990101"
        d.mkdir(parents=True)
        for s in range(1, slices + 1):
            tifffile.imwrite(d / f"{d.name}_{s}.tif", rgb(seed=p * 10 + s), photometric="rgb")
            tifffile.imwrite(d / f"{d.name}_{s}_mask.tif", disk_mask(empty=(s % 2 == 0)).astype(np.uint8) * 255)
    (src / "kaggle_3m" / "data.csv").write_text("Patient\n")
    # The Kaggle archive repeats the data under lgg-mri-segmentation/kaggle_3m/.
    import shutil
    for d in sorted((src / "kaggle_3m").iterdir())[:2]:
        if d.is_dir():
            shutil.copytree(d, src / "lgg-mri-segmentation" / "kaggle_3m" / d.name)


def test_lgg_split_by_patient_and_only_lesion(tmp_path):
    src = tmp_path / "lgg"
    make_lgg(src)
    out = tmp_path / "data"
    report = prepare_dataset("lgg", src, out, labeled=0.25)
    lay = check_splits(out)
    groups = json.loads((out / "splits" / "patients.json").read_text())
    assert len(groups["test/lgg"]) == 2 and len(groups["val"]) == 1 and len(groups["train"]) == 7
    parts = [set(v) for v in groups.values()]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 10  # no patient in two splits
    patient = lambda i: i.rsplit("_", 1)[0]  # noqa: E731
    assert {patient(i) for i in lay.train_ids()} == set(groups["train"])
    assert {patient(it.id) for it in lay.items("lgg")} == set(groups["test/lgg"])
    assert len(lay.labeled_ids) == 8  # floor(0.25 * 32 pool slices)
    assert all(p.suffix == ".png" for p in (out / "train" / "images").iterdir())
    assert report["counts"]["dropped_without_lesion"] == 0
    assert sum("lgg-mri-segmentation" in p for p in report["ignored"]) == 2  # duplicate copies skipped
    les = prepare_dataset("lgg", src, tmp_path / "les", only_lesion=True, labeled=2)
    assert les["counts"]["dropped_without_lesion"] == 20
    lay2 = DatasetLayout(tmp_path / "les")
    assert all(read_mask(it.mask).any() for it in lay2.items("train"))
    paper = prepare_dataset("lgg", src, tmp_path / "paper", protocol="paper", labeled=2)
    groups = json.loads((tmp_path / "paper" / "splits" / "patients.json").read_text())
    assert paper["counts"]["dropped_without_lesion"] == 20 and len(groups["test/lgg"]) == 3  # 25 %


def test_folder_with_test_sets_and_bad_inputs(tmp_path):
    src = folder_dataset(tmp_path / "src", 12)
    for i in range(3):
        pair(src / "test" / "set A" / "images", src / "test" / "set A" / "masks", f"t{i}", seed=90 + i)
    # Problems: truncated image, image without mask, mask without image, size mismatch.
    data = (src / "images" / "img001.png").read_bytes()
    (src / "images" / "img001.png").write_bytes(data[: len(data) // 2])
    (src / "masks" / "img002.png").unlink()
    save(src / "masks" / "orphan.png", disk_mask().astype(np.uint8) * 255)
    save(src / "masks" / "img003.png", np.zeros((10, 10), np.uint8))
    out = tmp_path / "data"
    with pytest.raises(DataError) as e:
        prepare_dataset("folder", src, out, labeled=2)
    msg = str(e.value)
    for name in ("img001.png", "img002.png", "orphan.png", "img003.png", "--skip-bad"):
        assert name in msg
    assert not out.exists() and not list(tmp_path.glob(".data.partial-*"))  # nothing half-written
    report = prepare_dataset("folder", src, out, labeled=2, skip_bad=True)
    lay = check_splits(out)
    assert {b["id"] for b in report["bad"]} == {"img001", "img002", "orphan", "img003"}
    assert json.loads((out / "prepare_report.json").read_text())["counts"]["bad"] == 4
    assert lay.test_sets() == ["set A"] and len(lay.items("set A")) == 3
    kept = set(lay.train_ids()) | set(ids(out / "splits" / "val.txt"))
    assert len(kept) == 9 and not kept & {"img001", "img002", "img003"}
    # Unicode/space names, empty and fully positive masks go through prepare and the loader.
    pair(src / "images", src / "masks", "pólipo ü 1", full=True, seed=7)
    out2 = tmp_path / "data2"
    prepare_dataset("folder", src, out2, labeled=1.0, val=0, skip_bad=True)
    lay2 = DatasetLayout(out2)
    assert "pólipo ü 1" in lay2.labeled_ids and len(lay2.labeled_ids) == 10
    from decseg.config import load_config
    from decseg.data import TwoStreamLoader
    loader = TwoStreamLoader(lay2, load_config(overrides=["data.size=64"]).data, 10, 0, seed=0, semi=False)
    lab, _ = next(loader)
    fg = dict(zip(lab["id"], lab["mask"].float().mean((1, 2)).tolist()))
    assert fg["pólipo ü 1"] == 1.0 and fg["img000"] == 0.0  # full and empty masks
    # An existing output is never overwritten by accident.
    with pytest.raises(DecsegError, match="already exists"):
        prepare_dataset("folder", src, out, labeled=2, skip_bad=True)


def test_duplicate_stems_and_missing_structure(tmp_path):
    src = folder_dataset(tmp_path / "src", 4)
    (src / "images" / "img000.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="img000.jpg.*different extensions|different extensions"):
        prepare_dataset("folder", src, tmp_path / "o", labeled=1)
    with pytest.raises(DataError, match="TrainDataset"):
        prepare_dataset("polyp", tmp_path / "src" / "images", tmp_path / "o2", labeled=1)
    with pytest.raises(DataError, match="ISIC2018"):
        prepare_dataset("isic2018", src, tmp_path / "o3")
    assert cli(["prepare", "lgg", "--src", str(src), "--out", str(tmp_path / "o4")]) == 2
