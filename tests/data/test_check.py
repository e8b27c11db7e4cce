"""The data check before training: every problem at once, before any iteration runs."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from decseg import load_config
from decseg.data import DatasetLayout
from decseg.data.check import MAX_LISTED, check_training_data
from decseg.errors import DataError
from decseg.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from helpers_data import disk_mask, rgb, save  # noqa: E402


def _copy(tiny_data, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


def _ids(data: Path, which: str) -> list[str]:
    return (data / "splits" / f"{which}.txt").read_text().split()


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_good_dataset_passes(tiny_data):
    layout = DatasetLayout(tiny_data)
    # 4 labeled images + masks, 6 unlabeled images (their masks are never read), 2 val pairs
    assert check_training_data(layout) == 4 * 2 + 6 + 2 * 2


def test_bad_val_image_and_train_mask_stop_training_before_any_iteration(
        tiny_data, tiny_overrides, tmp_path, monkeypatch):
    data = _copy(tiny_data, tmp_path)
    val_image = _truncate(sorted((data / "val" / "images").iterdir())[0])
    first = _ids(data, "labeled")[0]
    save(data / "train" / "masks" / f"{first}.png", disk_mask(32, 48).astype(np.uint8) * 255)

    def no_model(*a, **k):
        raise AssertionError("the network was built before the data check")

    monkeypatch.setattr("decseg.train.trainer.build_training", no_model)
    run = tmp_path / "run"
    cfg = load_config(None, tiny_overrides + ["train.iterations=2", "train.val_every=1"])
    with pytest.raises(DataError) as e:
        Trainer(cfg, data, run).run()
    msg = str(e.value)
    assert msg.startswith(f"2 problem(s) in {data}")
    assert f"{val_image}: cannot read image" in msg
    assert f"{first}.png: mask is 48x32 but its image {first}.png is 64x64" in msg
    assert "--skip-bad" in msg
    assert not run.exists()  # no config.yaml, log.jsonl, checkpoints (and no lock left)


def test_every_kind_of_problem_is_listed(tiny_data, tmp_path):
    data = _copy(tiny_data, tmp_path)
    lab, unl = _ids(data, "labeled"), _ids(data, "unlabeled")
    (data / "train" / "images" / f"{unl[0]}.png").write_bytes(b"")  # zero-byte unlabeled image
    (data / "train" / "masks" / f"{unl[1]}.png").write_bytes(b"")  # unlabeled masks are not read
    jpg = data / "train" / "images" / f"{lab[0]}.jpg"
    (data / "train" / "images" / f"{lab[0]}.png").unlink()
    _truncate(save(jpg, rgb(64, 64), quality=90))
    tif = data / "train" / "images" / f"{lab[1]}.tif"
    (data / "train" / "images" / f"{lab[1]}.png").unlink()
    tifffile.imwrite(tif, rgb(64, 64))
    _truncate(tif)
    val_mask = sorted((data / "val" / "masks").iterdir())[1]
    val_mask.unlink()
    with pytest.raises(DataError) as e:
        check_training_data(DatasetLayout(data))
    msg = str(e.value)
    assert msg.startswith("4 problem(s)")
    assert f"{unl[0]}.png: zero-byte file" in msg and f"{unl[1]}.png" not in msg
    assert f"{jpg}: cannot read image" in msg and f"{tif}: cannot read image" in msg
    assert f"has no mask; add {val_mask}" in msg


def test_a_good_tiff_and_jpeg_pass(tiny_data, tmp_path):
    data = _copy(tiny_data, tmp_path)
    lab = _ids(data, "labeled")
    (data / "train" / "images" / f"{lab[0]}.png").unlink()
    save(data / "train" / "images" / f"{lab[0]}.jpg", rgb(64, 64), quality=90)
    (data / "train" / "images" / f"{lab[1]}.png").unlink()
    tifffile.imwrite(data / "train" / "images" / f"{lab[1]}.tif", rgb(64, 64))
    check_training_data(DatasetLayout(data))


def test_long_lists_are_cut(tiny_data, tmp_path):
    data = _copy(tiny_data, tmp_path)
    for i in range(30):  # 30 val images without masks
        save(data / "val" / "images" / f"extra_{i:02d}.png", rgb(8, 8))
    with pytest.raises(DataError) as e:
        check_training_data(DatasetLayout(data))
    msg = str(e.value)
    assert msg.startswith("30 problem(s)") and f"... and {30 - MAX_LISTED} more" in msg
    assert msg.count("has no mask") == MAX_LISTED
