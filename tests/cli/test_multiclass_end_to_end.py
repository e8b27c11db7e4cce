"""A 4-class dataset end to end through real ``decseg`` processes: grey-coded masks (0/85/170/255)
-> prepare folder --classes 4 --label-map -> train -> predict (palette index PNGs at the original
size, --soft per class, overlays) -> evaluate (per-class scores); and bad labels -> exit 2."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from decseg.labels import PALETTE

K = 4
GREY = np.array([0, 85, 170, 255], np.uint8)
LABEL_MAP = "0:0,85:1,170:2,255:3"
TINY = ["model.encoder=test_resnet", "model.pretrained=false", "data.size=64", "data.num_workers=0",
        "train.batch_labeled=2", "train.batch_unlabeled=2", "train.amp=off", "train.channels_last=false",
        "train.device=cpu", "train.log_every=1", "train.image_every=0", "train.iterations=2",
        "train.val_every=2", f"data.classes={K}"]


def _labels(h: int, w: int, i: int) -> np.ndarray:
    lab = np.zeros((h, w), np.uint8)
    lab[3 + i % 4: h // 2, 3: w // 2] = 1
    lab[h // 2: h - 3, 5: w // 2 + i % 5] = 2
    lab[4: h - 4, w // 2 + 2: w - 3] = 3
    return lab


def write_pair(images: Path, masks: Path, name: str, h: int, w: int, i: int) -> None:
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    lab = _labels(h, w, i)
    rng = np.random.default_rng(i)
    colour = np.array([[10, 10, 10], [210, 50, 50], [50, 210, 50], [50, 50, 210]], np.uint8)[lab]
    Image.fromarray(colour + rng.integers(0, 40, (h, w, 3), dtype=np.uint8)).save(images / f"{name}.png")
    Image.fromarray(GREY[lab]).save(masks / f"{name}.png")  # classes coded as grey levels


def write_source(src: Path) -> Path:
    for i in range(10):
        write_pair(src / "images", src / "masks", f"case{i:02d}", 40, 52, i)
    for i in range(3):  # a test set at another, non-square size
        write_pair(src / "test" / "heldout" / "images", src / "test" / "heldout" / "masks", f"h{i}", 45, 61, 50 + i)
    return src


def decseg(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "decseg", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_four_classes_prepare_train_predict_evaluate(tmp_path, subprocess_env):
    src = write_source(tmp_path / "src")
    data, run, pred, soft = tmp_path / "data", tmp_path / "run", tmp_path / "pred", tmp_path / "soft"
    r = decseg(["prepare", "folder", "--src", str(src), "--out", str(data), "--classes", str(K),
                "--label-map", LABEL_MAP, "--labeled", "4", "--val", "2", "--class-names", "background,rv,myo,lv"],
               subprocess_env, tmp_path)
    assert r.returncode == 0, r.stderr
    info = yaml.safe_load((data / "dataset.yaml").read_text())
    assert info["classes"] == K and info["label_map"] == {0: 0, 85: 1, 170: 2, 255: 3}

    r = decseg(["train", "--data", str(data), "--out", str(run), "--set", *TINY], subprocess_env, tmp_path)
    assert r.returncode == 0, r.stderr
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [rec["val_dice"] for rec in log if "val_dice" in rec] and all(
        math.isfinite(rec["loss"]) for rec in log if "loss" in rec)
    best = run / "checkpoints" / "best.pt"

    r = decseg(["predict", "--checkpoint", str(best), "--data", str(data), "--out", str(pred), "--workers", "0"],
               subprocess_env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "class-index (4 classes)" in r.stdout
    gt_masks = sorted((data / "test" / "heldout" / "masks").glob("*.png"))
    assert len(gt_masks) == 3
    for gt in gt_masks:
        with Image.open(pred / "heldout" / gt.name) as img:
            assert img.mode == "P" and img.size == (61, 45)  # the original size, W x H
            assert img.getpalette()[: 3 * K] == PALETTE[:K].reshape(-1).tolist()
            values = np.array(img)
        assert values.shape == (45, 61) and int(values.max()) <= K - 1

    r = decseg(["predict", "--checkpoint", str(best), "--images", str(data / "test" / "heldout" / "images"),
                "--out", str(soft), "--soft", "--overlay", "--workers", "0"], subprocess_env, tmp_path)
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (soft / "images").iterdir())
    assert files == sorted(f"h{i}_class{k}.png" for i in range(3) for k in range(K))
    probs = np.stack([np.array(Image.open(soft / "images" / f"h0_class{k}.png")).astype(int) for k in range(K)])
    assert probs.shape == (K, 45, 61) and np.abs(probs.sum(0) - 255).max() <= K  # rounding of each map
    overlay = np.array(Image.open(tmp_path / "soft_overlay" / "images" / "h0.png"))
    assert overlay.shape == (45, 61, 3)

    metrics = tmp_path / "m.json"
    r = decseg(["evaluate", "--pred", str(pred), "--gt", str(data / "test"), "--json", str(metrics)],
               subprocess_env, tmp_path)
    assert r.returncode == 0, r.stderr
    result = json.loads(metrics.read_text())["heldout"]
    for key in ("meanDice", "meanIoU", "HD95", "ASD", *(f"Dice/{n}" for n in ("rv", "myo", "lv"))):
        assert key in result, key
    assert 0.0 <= result["meanDice"] <= 1.0


def test_labels_outside_the_classes_stop_prepare_naming_the_file(tmp_path, subprocess_env):
    src = tmp_path / "src"
    for i in range(4):
        write_pair(src / "images", src / "masks", f"c{i}", 20, 24, i)
        lab = _labels(20, 24, i)
        Image.fromarray(lab).save(src / "masks" / f"c{i}.png")  # indices 0..3, no map needed
    lab[0, 0] = 7
    Image.fromarray(lab).save(src / "masks" / "c3.png")
    r = decseg(["prepare", "folder", "--src", str(src), "--out", str(tmp_path / "d"), "--classes", str(K)],
               subprocess_env, tmp_path)
    assert r.returncode == 2, r.stderr
    assert str(src / "masks" / "c3.png") in r.stderr and "7" in r.stderr and "0..3" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "d").exists()
