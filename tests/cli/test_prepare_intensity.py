"""`decseg prepare` on 16-bit, signed and float files: grey levels and percentiles of the prepared
PNGs, the dataset.yaml record, the collapse warning, and `predict --images` on the raw files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from PIL import Image

YY, XX = np.mgrid[:64, :64]


def disk(cy: int, cx: int, r: int) -> np.ndarray:
    return np.hypot(YY - cy, XX - cx) < r


def ct_slice(i: int) -> np.ndarray:
    """Signed HU: air -1024, a body ~40 HU with a smooth gradient, a lesion ~ +200, bone up to 1561."""
    rng = np.random.default_rng(i)
    hu = np.full((64, 64), -1024.0)
    body = disk(32, 32, 28)
    hu[body] = 40 + (YY[body] - 32) * 3 + rng.normal(0, 15, body.sum())
    hu[disk(28 + i, 30, 7)] += 160
    hu[disk(44, 44, 4)] = 1200 + 60 * i
    hu[0, 0] = 1561
    return np.clip(np.round(hu), -1024, 1561).astype(np.int16)


def nuclei(i: int) -> np.ndarray:
    """uint16 fluorescence with a small used range (32,978-36,863)."""
    v = 32978 + ((YY * 64 + XX) * 61 + i * 97) % 3886
    return v.astype(np.uint16)


def write_pair(src: Path, name: str, image: np.ndarray, mask: np.ndarray, ext: str) -> None:
    (src / "images").mkdir(parents=True, exist_ok=True)
    (src / "masks").mkdir(parents=True, exist_ok=True)
    path = src / "images" / f"{name}{ext}"
    if ext == ".tif":
        tifffile.imwrite(path, image)
    else:
        Image.fromarray(image).save(path)
    Image.fromarray(mask.astype(np.uint8) * 255).save(src / "masks" / f"{name}.png")


def prepare(src: Path, out: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "decseg", "prepare", "folder", "--src", str(src), "--out",
                           str(out), "--labeled", "2", "--seed", "1", *args],
                          env=env, capture_output=True, text=True, timeout=300)


def prepared(out: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) for p in sorted(out.glob("**/images/*.png"))}


def windowed(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(np.round((a.astype(np.float64) - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def mixed_src(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("mixed") / "src"
    for i in range(3):
        write_pair(src, f"ct{i}", ct_slice(i), disk(28 + i, 30, 7), ".tif")
        write_pair(src, f"nuc{i}", nuclei(i), disk(20, 20 + i, 6), ".png")
    f = np.linspace(-3000, 5979, 64 * 64, dtype=np.float32).reshape(64, 64)
    write_pair(src, "float0", f, disk(32, 32, 9), ".tif")
    return src


def test_default_prepare_keeps_the_contrast_of_16_bit_signed_and_float_images(mixed_src, tmp_path,
                                                                                subprocess_env):
    out = tmp_path / "data"
    r = prepare(mixed_src, out, subprocess_env)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    images = prepared(out)
    assert len(images) == 7
    for name, img in images.items():
        ext = ".png" if name.startswith("nuc") else ".tif"
        raw = tifffile.imread(mixed_src / "images" / f"{name}{ext}") if ext == ".tif" else \
            np.asarray(Image.open(mixed_src / "images" / f"{name}{ext}"))
        lo, hi = np.percentile(raw.astype(np.float64), [0.5, 99.5])
        assert img.dtype == np.uint8 and img.ndim == 2  # grey stays grey
        assert np.array_equal(img, windowed(raw, lo, hi)), name
        p1, p99 = np.percentile(img, [1, 99])
        assert p1 <= 2 and p99 >= 200, (name, p1, p99)  # the old /65535 rule: p99 <= 143, ct <= 6
        assert len(np.unique(img)) >= (30 if name.startswith("ct") else 250), name  # old rule: ct <= 7
    info = yaml.safe_load((out / "dataset.yaml").read_text())
    assert info["intensity"]["mode"] == "auto"
    assert (info["intensity"]["low"], info["intensity"]["high"]) == (0.5, 99.5)
    assert "--intensity auto" in info["intensity"]["chosen_by"]
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["intensity"]["source_types"] == {"float32": 1, "int16": 3, "uint16": 3}
    assert report["contrast_warnings"] == []


def test_window_dataset_and_collapse_warning(tmp_path, subprocess_env):
    src = tmp_path / "src"
    for i in range(5):
        write_pair(src, f"ct{i}", ct_slice(i), disk(28 + i, 30, 7), ".tif")
    # a given test set with extreme values: the dataset window must not see it
    hot = ct_slice(9).astype(np.int32) + 3000
    write_pair(src / "test" / "ext", "hot", np.clip(hot, -32768, 32767).astype(np.int16),
               disk(30, 30, 5), ".tif")

    out = tmp_path / "soft"
    r = prepare(src, out, subprocess_env, "--window=-160,240", "--val", "0")
    assert r.returncode == 0, r.stderr
    images = prepared(out)
    for name, img in images.items():
        raw = tifffile.imread(src / "images" / f"{name}.tif") if name != "hot" else \
            tifffile.imread(src / "test" / "ext" / "images" / "hot.tif")
        assert np.array_equal(img, windowed(raw, -160, 240)), name
    info = yaml.safe_load((out / "dataset.yaml").read_text())["intensity"]
    assert (info["mode"], info["low"], info["high"]) == ("window", -160.0, 240.0)
    # air and bone outside the window are no collapse; the hot test image, all above it, is one
    warned = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "hot.tif" in warned[0], r.stderr

    out = tmp_path / "ds"
    r = prepare(src, out, subprocess_env, "--intensity", "dataset", "--val", "1")
    assert r.returncode == 0, r.stderr
    info = yaml.safe_load((out / "dataset.yaml").read_text())["intensity"]
    train_ids = sorted(p.stem for p in (out / "train" / "images").iterdir())
    assert len(train_ids) == 4 and info["mode"] == "window" and "train/" in info["chosen_by"]
    pooled = np.concatenate([tifffile.imread(src / "images" / f"{i}.tif").ravel() for i in train_ids])
    lo, hi = np.percentile(pooled.astype(np.float64), [0.5, 99.5])
    assert info["low"] == pytest.approx(lo) and info["high"] == pytest.approx(hi)
    val_id = next((out / "val" / "images").iterdir()).stem
    assert np.array_equal(prepared(out)[val_id],
                          windowed(tifffile.imread(src / "images" / f"{val_id}.tif"), info["low"], info["high"]))

    # a window that misses the data: the prepared image keeps 1 grey level -> named in a warning
    nsrc = tmp_path / "nsrc"
    for i in range(3):
        write_pair(nsrc, f"nuc{i}", nuclei(i), disk(20, 20, 6), ".png")
    out = tmp_path / "dark"
    r = prepare(nsrc, out, subprocess_env, "--window", "0,4095")
    assert r.returncode == 0, r.stderr
    assert "nuc0.png" in r.stderr and "grey level" in r.stderr
    report = json.loads((out / "prepare_report.json").read_text())
    assert sorted(w["id"] for w in report["contrast_warnings"]) == ["nuc0", "nuc1", "nuc2"]

    bad = prepare(nsrc, tmp_path / "bad", subprocess_env, "--intensity", "window")
    assert bad.returncode == 2 and "--window" in bad.stderr and not (tmp_path / "bad").exists()
    bad = prepare(nsrc, tmp_path / "bad", subprocess_env, "--window", "240,-160")
    assert bad.returncode == 2 and "LOW < HIGH" in bad.stderr


def test_predict_images_applies_the_recorded_rule_to_raw_files(tmp_path, subprocess_env, tiny_overrides):
    import torch

    src = tmp_path / "src"
    for i in range(6):
        write_pair(src, f"ct{i}", ct_slice(i), disk(28 + i, 30, 7), ".tif")
    data, run = tmp_path / "data", tmp_path / "run"
    r = prepare(src, data, subprocess_env, "--window=-160,240", "--val", "1")
    assert r.returncode == 0, r.stderr
    sets = [a for o in tiny_overrides for a in ("--set", o)]
    r = subprocess.run([sys.executable, "-m", "decseg", "train", "--data", str(data), "--out", str(run),
                        *sets, "--set", "train.iterations=1", "--set", "train.val_every=1"],
                       env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["intensity"] == "window:-160,240"
    ckpt = run / "checkpoints" / "last.pt"
    stored = torch.load(ckpt, map_location="cpu", weights_only=True)["config"]
    assert stored["data"]["intensity"] == "window:-160,240"
    clash = subprocess.run([sys.executable, "-m", "decseg", "train", "--data", str(data), "--out",
                            str(tmp_path / "run2"), *sets, "--set", "data.intensity=minmax"],
                           env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert clash.returncode == 2 and "records intensity window:-160,240" in clash.stderr, clash.stderr

    def predict(images: Path, out: Path, *extra: str) -> dict[str, np.ndarray]:
        """The --overlay pictures: the input image as predict read it, with the predicted outline."""
        p = subprocess.run([sys.executable, "-m", "decseg", "predict", "--checkpoint", str(ckpt), "--images",
                            str(images), "--out", str(out), "--overlay", "--workers", "0", *extra],
                           env=subprocess_env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        return {f.stem: np.asarray(Image.open(f)) for f in sorted(Path(f"{out}_overlay").glob("*/*.png"))}

    # the same images as prepare wrote them (8-bit PNGs, read as pixels / 255)
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for f in data.glob("*/images/*.png"):
        (pngs / f.name).write_bytes(f.read_bytes())
    raw = predict(src / "images", tmp_path / "pred_raw")
    eight = predict(pngs, tmp_path / "pred_png")
    assert sorted(raw) == sorted(eight) and len(raw) == 6
    for k in raw:
        assert np.array_equal(raw[k], eight[k]), k
    # the old full-scale rule on the raw files gives other (near-black) pictures
    unit = predict(src / "images", tmp_path / "pred_unit", "--set", "data.intensity=unit")
    assert all(unit[k].mean() < raw[k].mean() - 20 for k in raw)

    # and the network's input: predict's reader of --images with the checkpoint's config
    from decseg.inference.checkpoint import stored_config
    from decseg.inference.predictor import source_from_images

    cfg = stored_config(torch.load(ckpt, map_location="cpu", weights_only=True), ckpt)
    from_raw, from_png = source_from_images(src / "images", cfg).dataset, source_from_images(pngs, cfg).dataset
    for i in range(len(from_raw)):
        a, b = from_raw[i], from_png[i]
        assert a["id"] == b["id"] and torch.equal(a["image"], b["image"]), a["id"]
