"""Datasets of K > 2 classes: prepare with --classes / --label-map, the layout's keys, the data
check, and the training and evaluation views (class indices, nearest-neighbour resizing)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from decseg.cli.main import main as cli
from decseg.config import load_config
from decseg.data import DatasetLayout
from decseg.data.check import check_training_data
from decseg.data.datasets import EvalDataset, TrainViews, load_pair
from decseg.data.transforms import geometric, resize_mask
from decseg.errors import DataError

GREY = (0, 85, 170, 255)  # how the fake source codes classes 0..3


def quadrant_labels(h: int, w: int, shift: int) -> np.ndarray:
    """Class indices 0..3: background, then three blocks that move with ``shift``."""
    lab = np.zeros((h, w), np.uint8)
    lab[2 + shift % 3: h // 2, 2: w // 2] = 1
    lab[h // 2: h - 2, 3 + shift % 4: w // 2] = 2
    lab[3: h - 3, w // 2 + 1: w - 2] = 3
    return lab


def write_source(src: Path, n: int = 12, h: int = 30, w: int = 40, coded: bool = True) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (src / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        lab = quadrant_labels(h, w, i)
        image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8) + (lab[..., None] * 60).astype(np.uint8)
        Image.fromarray(image).save(src / "images" / f"s{i:02d}.png")
        stored = np.asarray(GREY, np.uint8)[lab] if coded else lab
        Image.fromarray(stored).save(src / "masks" / f"s{i:02d}.png")
    return src


@pytest.fixture(scope="module")
def k4_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("k4")
    src = write_source(root / "src")
    out = root / "data"
    assert cli(["prepare", "folder", "--src", str(src), "--out", str(out), "--classes", "4", "--labeled", "4",
                "--val", "2", "--label-map", "0:0,85:1,170:2,255:3",
                "--class-names", "background,a,b,c"]) == 0
    return out


def test_prepare_writes_palette_index_masks_and_the_yaml_keys(k4_data):
    info = yaml.safe_load((k4_data / "dataset.yaml").read_text())
    assert info["classes"] == 4 and info["label_map"] == {0: 0, 85: 1, 170: 2, 255: 3}
    assert info["class_names"] == ["background", "a", "b", "c"]
    masks = sorted((k4_data / "train" / "masks").glob("*.png"))
    assert masks
    with Image.open(masks[0]) as img:
        assert img.mode == "P"
        values = np.array(img)
    i = int(masks[0].stem[1:])
    assert np.array_equal(values, quadrant_labels(30, 40, i))
    lay = DatasetLayout(k4_data)
    assert lay.classes == 4 and lay.class_names == ["background", "a", "b", "c"]
    assert lay.label_map == {0: 0, 85: 1, 170: 2, 255: 3}
    assert check_training_data(lay) > 0


def test_index_masks_need_no_label_map(tmp_path):
    src = write_source(tmp_path / "src", n=6, coded=False)
    out = tmp_path / "data"
    assert cli(["prepare", "folder", "--src", str(src), "--out", str(out), "--classes", "4", "--labeled", "2"]) == 0
    info = yaml.safe_load((out / "dataset.yaml").read_text())
    assert info["classes"] == 4 and "label_map" not in info
    m = next((out / "train" / "masks").glob("*.png"))
    assert np.array_equal(np.array(Image.open(m)), quadrant_labels(30, 40, int(m.stem[1:])))


def test_grey_coded_masks_without_a_label_map_fail_naming_the_file(tmp_path, capsys):
    src = write_source(tmp_path / "src", n=4)
    rc = cli(["prepare", "folder", "--src", str(src), "--out", str(tmp_path / "d"), "--classes", "4"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "s00.png" in err and "outside the class indices 0..3" in err
    assert "--label-map 0:0,85:1,170:2,255:3" in err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("label_map, expected", [
    ("0:0,85:1,170:2,255:4", "outside 0..3"),
    ("0:0,85:1,170:2,200:3", "not in the label map"),
    ("0:0,85:1,170:1,255:1", "no raw value to class(es) [2, 3]"),
    ("0=0", "RAW:CLASS"),
])
def test_bad_label_maps_are_one_line_errors(tmp_path, capsys, label_map, expected):
    src = write_source(tmp_path / "src", n=3)
    rc = cli(["prepare", "folder", "--src", str(src), "--out", str(tmp_path / "d"), "--classes", "4",
              "--label-map", label_map])
    assert rc == 2
    assert expected in capsys.readouterr().err


def test_binary_prepare_is_unchanged_and_takes_a_label_map(tmp_path):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(src / "images" / f"b{i}.png")
        m = np.zeros((8, 8), np.uint8)
        m[2:6, 2:6] = 100  # "lesion" stored as 100: the binary rule alone would read it as empty
        Image.fromarray(m).save(src / "masks" / f"b{i}.png")
    assert cli(["prepare", "folder", "--src", str(src), "--out", str(tmp_path / "d"), "--labeled", "2",
                "--label-map", "0:0,100:1"]) == 0
    m = np.array(Image.open(next((tmp_path / "d" / "train" / "masks").glob("*.png"))))
    assert Image.open(next((tmp_path / "d" / "train" / "masks").glob("*.png"))).mode == "L"
    assert set(np.unique(m).tolist()) == {0, 255}
    info = yaml.safe_load((tmp_path / "d" / "dataset.yaml").read_text())
    assert info["classes"] == 2 and info["label_map"] == {0: 0, 100: 1}


def test_layout_validates_class_names_and_label_map(k4_data, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(k4_data, copy)
    info = yaml.safe_load((copy / "dataset.yaml").read_text())
    for key, value, expected in (("class_names", ["bg", "a"], "lists 2 names"),
                                 ("label_map", {0: 0, 85: 7}, "outside 0..3")):
        bad = {**info, key: value}
        (copy / "dataset.yaml").write_text(yaml.safe_dump(bad))
        with pytest.raises(DataError, match=expected):
            DatasetLayout(copy)


def test_data_check_lists_a_mask_value_outside_the_classes(k4_data, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(k4_data, copy)
    lay = DatasetLayout(copy)
    bad = lay.train_item(lay.labeled_ids[0]).mask
    arr = np.array(Image.open(bad))
    arr[0, 0] = 9
    Image.fromarray(arr).save(bad)  # a grey PNG now, with a stray value
    with pytest.raises(DataError) as e:
        check_training_data(DatasetLayout(copy))
    assert bad.name in str(e.value) and "9" in str(e.value)


def test_views_carry_class_indices_resized_by_nearest_neighbour(k4_data):
    cfg = load_config(overrides=["data.size=64", "data.classes=4", "data.geometric_aug=true"]).data
    lay = DatasetLayout(k4_data)
    views = TrainViews([[lay.train_item(i) for i in lay.labeled_ids]], cfg, seed=1)
    sample = views[(0, 0, 0)]
    assert sample["mask"].shape == (64, 64) and sample["mask"].dtype == torch.long
    assert set(torch.unique(sample["mask"]).tolist()) == {0, 1, 2, 3}
    assert sample["mask_half"].shape == (cfg.half_size, cfg.half_size)
    _, mask, size = load_pair(lay.train_item(lay.labeled_ids[0]), 3, classes=4)
    assert mask.dtype == torch.uint8 and tuple(mask.shape) == tuple(size) == (30, 40)
    val = EvalDataset(lay, "val", cfg)
    item = val[0]
    assert item["mask"].dtype == torch.uint8 and int(item["mask"].max()) == 3


def test_resize_and_geometric_keep_indices_exact():
    lab = torch.from_numpy(quadrant_labels(30, 40, 1))
    small = resize_mask(lab, 17)
    assert set(torch.unique(small).tolist()) <= {0, 1, 2, 3}
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 30, 40)
    for _ in range(4):
        _, moved = geometric(image, lab, gen)
        assert moved.dtype == lab.dtype
        assert torch.equal(torch.bincount(moved.flatten().long()), torch.bincount(lab.flatten().long()))
