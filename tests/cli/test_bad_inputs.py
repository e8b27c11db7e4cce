"""Every command meets bad input with one clear line (file + problem + what to do) and exit 2.

Each bad input is a real file on disk; the real CLI runs in-process through
``decseg.cli.main.main`` (a few through ``python -m decseg`` to prove that no traceback
reaches stderr). Odd but valid inputs (grey, RGBA, palette, 16-bit, CMYK images; 0/1, RGB,
empty and full masks; unicode names) must work end to end: prepare, train, predict, evaluate.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decseg.cli.main import main

# Tiny, fast training settings: timm's test encoder, 64 px, fp32 on the CPU, no loader workers.
TINY = ["model.encoder=test_resnet", "model.pretrained=false", "data.size=64", "train.iterations=1",
        "train.batch_labeled=2", "train.batch_unlabeled=2", "train.amp=off", "train.device=cpu",
        "train.channels_last=false", "data.num_workers=0", "train.val_every=1", "train.log_every=1",
        "train.image_every=0"]




def has_command(name: str) -> bool:
    return importlib.util.find_spec(f"decseg.cli.{name}") is not None


needs_train = pytest.mark.skipif(not has_command("train"), reason="decseg train not built yet")
needs_predict = pytest.mark.skipif(not has_command("predict"), reason="decseg predict not built yet")
needs_summary = pytest.mark.skipif(not has_command("summary"), reason="decseg summary not built yet")
needs_export = pytest.mark.skipif(not has_command("export"), reason="decseg export not built yet")


def sets(*pairs: str) -> list[str]:
    out = []
    for kv in pairs:
        out += ["--set", kv]
    return out


def cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def error_line(err: str, command: str) -> str:
    """The one ``decseg CMD: error: ...`` message (progress bars and notes may precede it)."""
    tag = f"decseg {command}: error:"
    lines = [ln[ln.index(tag):] for ln in err.replace("\r", "\n").splitlines() if tag in ln]
    assert len(lines) == 1, f"expected one error line, stderr was:\n{err}"
    return lines[0]


def assert_user_error(result: tuple[int, str, str], command: str, *must_contain: str) -> str:
    """Exit 2, no traceback, no 'unexpected', one error line containing each of ``must_contain``."""
    rc, out, err = result
    assert "Traceback" not in err and "unexpected" not in err, err
    assert rc == 2, f"rc={rc}, stderr:\n{err}"
    line = error_line(err, command)
    # The whole message (it may span lines, e.g. prepare's list of bad files).
    message = err[err.index(line[:60]):]
    for text in must_contain:
        assert text.lower() in message.lower(), f"{text!r} not in:\n{message}"
    return message


def assert_ok(result: tuple[int, str, str]) -> str:
    rc, out, err = result
    assert rc == 0, f"rc={rc}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in err
    return out


# -- image makers -------------------------------------------------------------------------------

def rgb(h=40, w=48, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def disk(h=40, w=48, r=10) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < r * r


def save_mask(path: Path, mask: np.ndarray, on: int = 255) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(mask, on, 0).astype(np.uint8)).save(path)
    return path


def save_rgb(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


def odd_images(folder: Path) -> dict[str, tuple[int, int]]:
    """Valid images of every awkward kind, each (H, W) distinct-ish; returns stem -> (H, W)."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    base = rgb(40, 48, 1)
    grey = base[..., 0]
    Image.fromarray(grey, "L").save(folder / "grey.png")
    Image.fromarray(np.dstack([base, np.full((40, 48), 200, np.uint8)]), "RGBA").save(folder / "rgba.png")
    Image.fromarray(base).quantize(16).save(folder / "palette.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "grey16.png")  # mode I;16
    Image.fromarray(base).convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    tifffile.imwrite(folder / "rgb16.tif", base.astype(np.uint16) * 257, photometric="rgb")
    tifffile.imwrite(folder / "cmyk tiff.tif", np.asarray(Image.fromarray(base).convert("CMYK")),
                     photometric="separated")
    Image.fromarray(base).save(folder / "photo.jpg", quality=90)
    Image.fromarray(rgb(36, 52, 2)).save(folder / "läsion ünicode 01.png")
    Image.fromarray(rgb(44, 40, 3)).save(folder / "图像 2.bmp")
    sizes = {p.stem: (Image.open(p).height, Image.open(p).width) for p in folder.iterdir()}
    return sizes


def odd_masks(folder: Path, sizes: dict[str, tuple[int, int]]) -> None:
    """Masks of every valid flavour: 0/255, 0/1, RGB, palette, 16-bit, empty, fully positive."""
    folder.mkdir(parents=True, exist_ok=True)
    flavours = ["0-255", "0-1", "rgb", "empty", "full", "0-255", "palette", "16bit", "0-1", "rgb"]
    for (stem, (h, w)), kind in zip(sorted(sizes.items()), flavours):
        m = disk(h, w, 9)
        p = folder / f"{stem}.png"
        if kind == "0-255":
            save_mask(p, m)
        elif kind == "0-1":
            save_mask(p, m, on=1)
        elif kind == "rgb":
            a = np.zeros((h, w, 3), np.uint8)
            a[m] = (255, 0, 0)  # red lesion on black
            Image.fromarray(a).save(p)
        elif kind == "empty":
            save_mask(p, np.zeros((h, w), bool))
        elif kind == "full":
            save_mask(p, np.ones((h, w), bool))
        elif kind == "palette":
            Image.fromarray(np.where(m, 255, 0).astype(np.uint8)).convert("P").save(p)
        elif kind == "16bit":
            Image.fromarray(np.where(m, 65535, 0).astype(np.uint16)).save(p)


# -- shared fixtures (module scope: built once) -----------------------------------------------

@pytest.fixture(scope="module")
def cli_data(tmp_path_factory) -> Path:
    """A synthetic dataset at 64 px: 3 labeled + 3 unlabeled, 2 val, 3 test images."""
    from decseg.data import generate_dataset

    return Path(generate_dataset(tmp_path_factory.mktemp("cli") / "data", n=6, size=64, seed=5,
                                 labeled=3, n_val=2, n_test=3))


@pytest.fixture(scope="module")
def cli_ckpt(tmp_path_factory, cli_data) -> Path:
    """best.pt of a one-iteration tiny run on ``cli_data``."""
    if not has_command("train"):
        pytest.skip("decseg train not built yet")
    import torch

    run = tmp_path_factory.mktemp("cli") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--data", str(cli_data), "--out", str(run), *sets(*TINY)]) == 0
    finally:
        torch.set_num_threads(threads)
    return run / "checkpoints" / "best.pt"


@pytest.fixture(scope="module")
def cli_odd_src(tmp_path_factory) -> Path:
    """A download in the ``folder`` layout holding only awkward-but-valid images and masks."""
    src = tmp_path_factory.mktemp("cli") / "odd src"
    sizes = odd_images(src / "images")
    odd_masks(src / "masks", sizes)
    return src


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def folder_src(root: Path, n: int = 4) -> Path:
    """A clean ``folder`` download with n pairs named case0..."""
    for i in range(n):
        save_rgb(root / "images" / f"case{i}.png", rgb(seed=i))
        save_mask(root / "masks" / f"case{i}.png", disk())
    return root


# == prepare ====================================================================================

def test_prepare_odd_but_valid_inputs_work(tmp_path, capsys, cli_odd_src):
    out = tmp_path / "data"
    text = assert_ok(cli(capsys, "prepare", "folder", "--src", cli_odd_src, "--out", out,
                         "--labeled", "6", "--val", "0"))
    assert "train pool 10" in text
    masks = sorted((out / "train" / "masks").iterdir())
    assert len(masks) == 10
    fg = {p.stem: np.asarray(Image.open(p)) for p in masks}
    assert all(set(np.unique(m)) <= {0, 255} for m in fg.values())
    # empty and fully positive masks stay empty / full; 0/1, RGB, palette and 16-bit ones keep the disk
    fractions = sorted(float((m > 0).mean()) for m in fg.values())
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert sum(0 < f < 1 for f in fractions) == 8
    ids = (out / "splits" / "labeled.txt").read_text(encoding="utf-8").split("\n")
    ids += (out / "splits" / "unlabeled.txt").read_text(encoding="utf-8").split("\n")
    assert "läsion ünicode 01" in ids and "图像 2" in ids


@pytest.mark.parametrize("kind", ["png", "jpg", "tif", "zero-byte", "garbage"])
def test_prepare_corrupt_image_is_named(tmp_path, capsys, kind):
    src = folder_src(tmp_path / "src")
    ext = {"png": ".png", "jpg": ".jpg", "tif": ".tif", "zero-byte": ".png", "garbage": ".jpg"}[kind]
    bad = tmp_path / "src" / "images" / f"broken{ext}"
    if kind == "tif":
        import tifffile

        tifffile.imwrite(bad, rgb(), photometric="rgb")
        truncate(bad, 0.3)
    elif kind == "zero-byte":
        bad.write_bytes(b"")
    elif kind == "garbage":
        bad.write_bytes(b"this is not a jpeg at all" * 20)
    else:
        save_rgb(bad, rgb(), **({"quality": 90} if ext == ".jpg" else {}))
        truncate(bad)
    save_mask(tmp_path / "src" / "masks" / "broken.png", disk())
    msg = assert_user_error(cli(capsys, "prepare", "folder", "--src", tmp_path / "src", "--out", tmp_path / "d",
                                "--labeled", "2"),
                            "prepare", bad.name, "--skip-bad")
    assert any(w in msg.lower() for w in ("truncated", "corrupt", "zero-byte", "cannot"))
    assert not (tmp_path / "d").exists()
    # --skip-bad leaves it out and lists it
    assert_ok(cli(capsys, "prepare", "folder", "--src", tmp_path / "src", "--out", tmp_path / "d", "--skip-bad",
                  "--labeled", "2"))
    report = json.loads((tmp_path / "d" / "prepare_report.json").read_text())
    assert bad.name in json.dumps(report, ensure_ascii=False)
    assert not list((tmp_path / "d").rglob("broken.*"))


def test_prepare_truncated_mask_is_named(tmp_path, capsys):
    src = folder_src(tmp_path / "src")
    truncate(src / "masks" / "case2.png")
    assert_user_error(cli(capsys, "prepare", "folder", "--src", src, "--out", tmp_path / "d", "--labeled", "2"),
                      "prepare", "case2.png")


def test_prepare_non_image_files_are_left_out(tmp_path, capsys):
    src = folder_src(tmp_path / "src")
    (src / "images" / "notes.txt").write_text("scan notes")
    (src / "masks" / "README.md").write_text("masks")
    (src / "images" / ".DS_Store").write_bytes(b"\0\1")
    out = tmp_path / "d"
    assert_ok(cli(capsys, "prepare", "folder", "--src", src, "--out", out, "--labeled", "2", "--val", "0"))
    assert sorted(p.name for p in (out / "train" / "images").iterdir()) == [f"case{i}.png" for i in range(4)]


def test_prepare_mask_size_mismatch_is_named(tmp_path, capsys):
    src = folder_src(tmp_path / "src")
    save_mask(src / "masks" / "case1.png", disk(20, 24, 5))
    assert_user_error(cli(capsys, "prepare", "folder", "--src", src, "--out", tmp_path / "d", "--labeled", "2"),
                      "prepare", "case1.png", "24x20", "48x40")


@pytest.mark.parametrize("missing", ["mask", "image"])
def test_prepare_missing_partner_is_named(tmp_path, capsys, missing):
    src = folder_src(tmp_path / "src")
    (src / ("masks" if missing == "mask" else "images") / "case3.png").unlink()
    assert_user_error(cli(capsys, "prepare", "folder", "--src", src, "--out", tmp_path / "d", "--labeled", "2"),
                      "prepare", "case3.png", f"without a{'n' if missing == 'image' else ''} {missing}")


def test_prepare_duplicate_stems_are_named(tmp_path, capsys):
    src = folder_src(tmp_path / "src")
    save_rgb(src / "images" / "case0.jpg", rgb(), quality=90)
    assert_user_error(cli(capsys, "prepare", "folder", "--src", src, "--out", tmp_path / "d", "--labeled", "2"),
                      "prepare", "case0.png", "case0.jpg", "keep one")


@pytest.mark.parametrize("on", [2, 100])
def test_prepare_label_map_mask_is_not_silently_emptied(tmp_path, capsys, on):
    """A mask whose lesion is stored as a small label (2 or 100, not 1 or 255) would become
    empty under the > half-scale rule: prepare reports it instead."""
    src = folder_src(tmp_path / "src")
    save_mask(src / "masks" / "case1.png", disk(), on=on)
    save_mask(src / "masks" / "case2.png", np.zeros((40, 48), bool))  # a truly empty mask is fine
    assert_user_error(cli(capsys, "prepare", "folder", "--src", src, "--out", tmp_path / "d", "--labeled", "2"),
                      "prepare", "case1.png", f"up to {on}", "255")
    assert_ok(cli(capsys, "prepare", "folder", "--src", src, "--out", tmp_path / "d", "--labeled", "2",
                  "--skip-bad"))
    assert not (tmp_path / "d" / "train" / "masks" / "case1.png").exists()
    assert (tmp_path / "d" / "train" / "masks" / "case2.png").exists() or \
        (tmp_path / "d" / "val" / "masks" / "case2.png").exists()


@pytest.mark.parametrize("task, says", [("polyp", "TrainDataset"), ("isic2018", "ISIC2018_Task1-2_Training_Input"),
                                         ("lgg", "_mask.tif"), ("folder", "images")])
def test_prepare_download_of_another_shape(tmp_path, capsys, task, says):
    src = tmp_path / "download"
    save_rgb(src / "photo.png", rgb())
    assert_user_error(cli(capsys, "prepare", task, "--src", src, "--out", tmp_path / "d"), "prepare",
                      "download", says, "docs/DATA.md" if task != "folder" else "masks")


def test_prepare_bad_src_and_out(tmp_path, capsys):
    assert_user_error(cli(capsys, "prepare", "folder", "--src", tmp_path / "nope", "--out", tmp_path / "d"),
                      "prepare", "nope", "not found")
    (tmp_path / "flat").mkdir()
    assert_user_error(cli(capsys, "prepare", "folder", "--src", tmp_path / "flat", "--out", tmp_path / "d"),
                      "prepare", "flat", "images")
    src = folder_src(tmp_path / "src")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert_user_error(cli(capsys, "prepare", "folder", "--src", src, "--out", tmp_path / "full", "--labeled", "2"),
                      "prepare", "full", "already exists")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert_user_error(cli(capsys, "prepare", "folder", "--src", src, "--out", tmp_path / "d2",
                          "--labeled", "abc"), "prepare", "--labeled", "fraction")


# == synth ======================================================================================

@pytest.mark.parametrize("args, says", [
    (["--n", "0"], "--n"),
    (["--n", "-3"], "--n"),
    (["--size", "8"], "--size"),
    (["--labeled", "2.5"], "--labeled"),
    (["--labeled", "lots"], "--labeled"),
    (["--n-test", "-1"], "--n-test"),
])
def test_synth_bad_arguments(tmp_path, capsys, args, says):
    assert_user_error(cli(capsys, "synth", tmp_path / "s", *args), "synth", says)
    assert not (tmp_path / "s").exists()


def test_synth_refuses_non_empty_out(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "mine.txt").write_text("x")
    assert_user_error(cli(capsys, "synth", tmp_path / "s", "--n", "4", "--size", "32"), "synth",
                      str(tmp_path / "s"), "already exists")
    assert (tmp_path / "s" / "mine.txt").exists()


# == train ======================================================================================

def write_split(data: Path, which: str, ids: list[str]) -> Path:
    p = data / "splits" / f"{which}.txt"
    p.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    return p


def train_args(data: Path, out: Path, *extra: str) -> list:
    return ["train", "--data", data, "--out", out, *sets(*TINY), *extra]


@needs_train
def test_train_split_with_unknown_id(tmp_path, capsys, cli_data):
    data = copy_dataset(cli_data, tmp_path / "d")
    ids = (data / "splits" / "labeled.txt").read_text().split()
    write_split(data, "labeled", ids + ["no_such_case"])
    assert_user_error(cli(capsys, *train_args(data, tmp_path / "run")), "train", "labeled.txt", "no_such_case")
    assert not (tmp_path / "run" / "checkpoints").exists()


@needs_train
@pytest.mark.parametrize("entry", ["../../../etc/passwd", "/etc/passwd", "..", "sub/dir"])
def test_train_split_escaping_the_dataset(tmp_path, capsys, cli_data, entry):
    data = copy_dataset(cli_data, tmp_path / "d")
    write_split(data, "unlabeled", [entry])
    assert_user_error(cli(capsys, *train_args(data, tmp_path / "run")), "train", "unlabeled.txt",
                      repr(entry), "not a plain file id")


@needs_train
def test_train_corrupt_training_image(tmp_path, capsys, cli_data):
    data = copy_dataset(cli_data, tmp_path / "d")
    victim = data / "train" / "images" / f"{(data / 'splits' / 'labeled.txt').read_text().split()[0]}.png"
    truncate(victim)
    msg = assert_user_error(cli(capsys, *train_args(data, tmp_path / "run")), "train", victim.name)
    assert "truncated" in msg or "corrupt" in msg


@needs_train
def test_train_corrupt_image_in_loader_worker(tmp_path, capsys, cli_data):
    """With loader worker processes the message must still be one clean line naming the file."""
    data = copy_dataset(cli_data, tmp_path / "d")
    victim = data / "train" / "images" / f"{(data / 'splits' / 'unlabeled.txt').read_text().split()[0]}.png"
    victim.write_bytes(b"")
    msg = assert_user_error(cli(capsys, *train_args(data, tmp_path / "run", "--set", "data.num_workers=1")),
                            "train", victim.name, "zero-byte")
    assert "Original Traceback" not in msg and "worker process" not in msg


@needs_train
def test_train_mask_size_mismatch(tmp_path, capsys, cli_data):
    data = copy_dataset(cli_data, tmp_path / "d")
    first = (data / "splits" / "labeled.txt").read_text().split()[0]
    save_mask(data / "train" / "masks" / f"{first}.png", disk(32, 32, 6))
    assert_user_error(cli(capsys, *train_args(data, tmp_path / "run")), "train", f"{first}.png", "32x32")


@needs_train
def test_train_missing_dataset_pieces(tmp_path, capsys, cli_data):
    assert_user_error(cli(capsys, *train_args(tmp_path / "nowhere", tmp_path / "run")), "train",
                      "nowhere", "decseg prepare")
    data = copy_dataset(cli_data, tmp_path / "d")
    (data / "dataset.yaml").unlink()
    assert_user_error(cli(capsys, *train_args(data, tmp_path / "run")), "train", "dataset.yaml", "missing")
    data2 = copy_dataset(cli_data, tmp_path / "d2")
    first = (data2 / "splits" / "labeled.txt").read_text().split()[0]
    (data2 / "train" / "masks" / f"{first}.png").unlink()
    assert_user_error(cli(capsys, *train_args(data2, tmp_path / "run")), "train", "labeled.txt", first, "no mask")
    data3 = copy_dataset(cli_data, tmp_path / "d3")
    save_rgb(data3 / "train" / "images" / f"{first}.jpg", rgb(64, 64), quality=90)
    assert_user_error(cli(capsys, *train_args(data3, tmp_path / "run")), "train", f"{first}.png", f"{first}.jpg",
                      "keep one")
    data4 = copy_dataset(cli_data, tmp_path / "d4")
    (data4 / "train" / "images" / "notes.txt").write_text("x")
    assert_user_error(cli(capsys, *train_args(data4, tmp_path / "run")), "train", "notes.txt", "not an image")


@needs_train
def test_train_split_with_bom_and_crlf_works(tmp_path, capsys, cli_data):
    """A split file saved by Windows Notepad (byte-order mark, CRLF) names the same IDs."""
    data = copy_dataset(cli_data, tmp_path / "d")
    path = data / "splits" / "labeled.txt"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_text().replace("\n", "\r\n").encode())
    assert_ok(cli(capsys, *train_args(data, tmp_path / "run")))


@needs_train
def test_train_split_not_utf8_and_bad_dataset_yaml(tmp_path, capsys, cli_data):
    data = copy_dataset(cli_data, tmp_path / "d")
    (data / "splits" / "unlabeled.txt").write_bytes("läsion\n".encode("latin-1"))
    assert_user_error(cli(capsys, *train_args(data, tmp_path / "run")), "train", "unlabeled.txt", "utf-8")
    data2 = copy_dataset(cli_data, tmp_path / "d2")
    text = (data2 / "dataset.yaml").read_text()
    (data2 / "dataset.yaml").write_text(text.replace("size: 64", "size: big"))
    assert_user_error(cli(capsys, *train_args(data2, tmp_path / "run")), "train", "dataset.yaml", "size", "int")
    (data2 / "dataset.yaml").write_text(text)
    assert_user_error(cli(capsys, *train_args(data2, tmp_path / "run", "--set", "data.classes=3")), "train",
                      "dataset.yaml", "classes=2", "data.classes=2")


@needs_train
def test_train_config_file_unknown_key_and_wrong_type(tmp_path, capsys, cli_data):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  iteratons: 5\n")
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r1", "--config", bad)), "train",
                      "bad.yaml", "train.iteratons", "unknown")
    bad.write_text("train:\n  iterations: lots\n")
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r2", "--config", bad)), "train",
                      "bad.yaml", "train.iterations", "expected int")
    bad.write_text("model:\n  cfa: maybe\n")
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r3", "--config", bad)), "train",
                      "model.cfa", "expected bool")
    bad.write_text("trian:\n  iterations: 5\n")
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r4", "--config", bad)), "train",
                      "bad.yaml", "trian", "section")
    bad.write_bytes(b"train:\n  # r\xe9glage\n  iterations: 5\n")  # Latin-1, not UTF-8
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r5", "--config", bad)), "train",
                      "bad.yaml", "utf-8")
    bad.write_text("train: [1, 2\n")
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r5", "--config", bad)), "train",
                      "bad.yaml", "yaml")
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r6", "--config", tmp_path / "no.yaml")),
                      "train", "no.yaml", "preset")
    for r in ("r1", "r2", "r3", "r4", "r5", "r6"):
        assert not (tmp_path / r / "checkpoints").exists()


@needs_train
def test_train_set_unknown_key_and_wrong_type(tmp_path, capsys, cli_data):
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r", "--set", "train.lr=fast")),
                      "train", "train.lr", "expected float")
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r", "--set", "train.bogus=1")),
                      "train", "train.bogus", "unknown")
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r", "--set", "iterations")),
                      "train", "iterations", "key=value")
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r", "--set", "data.size=100")),
                      "train", "data.size", "multiple of 32")


@needs_train
def test_train_unknown_encoder(tmp_path, capsys, cli_data):
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r", "--set", "model.encoder=resnet_nope")),
                      "train", "resnet_nope")


@needs_train
def test_train_pretrained_path_problems(tmp_path, capsys, cli_data, cli_ckpt):
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r1", "--set",
                                              f"model.pretrained={tmp_path / 'none.pt'}")),
                      "train", "none.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(cli_ckpt.read_bytes()[:5000])
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r2", "--set", f"model.pretrained={cut}")),
                      "train", "cut.pt")
    evil, marker = pickle_checkpoint(tmp_path)
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "r3", "--set", f"model.pretrained={evil}")),
                      "train", "evil.pt")
    assert not marker.exists()


@needs_train
def test_train_out_is_a_file(tmp_path, capsys, cli_data):
    (tmp_path / "run.txt").write_text("notes")
    assert_user_error(cli(capsys, *train_args(cli_data, tmp_path / "run.txt")), "train", "run.txt")
    assert (tmp_path / "run.txt").read_text() == "notes"


@needs_train
def test_train_on_odd_images_with_empty_and_full_masks(tmp_path, capsys, cli_odd_src):
    """Grey/RGBA/palette/16-bit/CMYK images, 0/1/RGB/empty/full masks, unicode names: it trains."""
    data = tmp_path / "odd"
    assert_ok(cli(capsys, "prepare", "folder", "--src", cli_odd_src, "--out", data, "--labeled", "6", "--val", "0"))
    # All labeled (empty and fully positive masks included) in the one batch, two partial ones unlabeled.
    fraction = {p.stem: float((np.asarray(Image.open(p)) > 0).mean()) for p in (data / "train" / "masks").iterdir()}
    assert sorted(fraction.values())[0] == 0.0 and sorted(fraction.values())[-1] == 1.0
    partial = sorted(i for i, f in fraction.items() if 0 < f < 1)
    # The raw awkward files themselves (16-bit/CMYK TIFF, CMYK JPEG, palette, ...) as unlabeled images.
    raw = []
    for f in sorted((cli_odd_src / "images").iterdir()):
        shutil.copyfile(f, data / "train" / "images" / f"raw {f.name}")
        raw.append(f"raw {f.stem}")
    write_split(data, "unlabeled", partial[:2] + raw)
    write_split(data, "labeled", sorted(set(fraction) - set(partial[:2])))
    # A validation split of one empty and one fully positive mask: val Dice must be defined.
    for name, mask in (("v_empty", np.zeros((40, 48), bool)), ("v_full", np.ones((40, 48), bool))):
        save_rgb(data / "val" / "images" / f"{name}.png", rgb(seed=7))
        save_mask(data / "val" / "masks" / f"{name}.png", mask)
    assert_ok(cli(capsys, *train_args(data, tmp_path / "run", "--set", "train.batch_labeled=8",
                                      "--set", f"train.batch_unlabeled={len(raw) + 2}")))
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses and all(np.isfinite(losses))
    val = [r["val_dice"] for r in log if "val_dice" in r]
    assert val and all(np.isfinite(val))
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


# == checkpoints (predict / export / train --resume) ===========================================

class _Payload:
    """Unpickling this would create ``marker``: the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def pickle_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    import torch

    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "config": {}, "model": {}, "payload": _Payload(marker)}, evil)
    assert not marker.exists()
    return evil, marker


def tampered_checkpoint(src: Path, dst: Path, **changes) -> Path:
    """A copy of ``src`` whose stored config claims other architecture keys (section.key=value)."""
    import torch

    ckpt = torch.load(src, weights_only=True)
    for key, value in changes.items():
        section, name = key.split("__")
        ckpt["config"][section][name] = value
    torch.save(ckpt, dst)
    return dst


def predict_args(ckpt: Path, data: Path, out: Path, *extra) -> list:
    return ["predict", "--checkpoint", ckpt, "--data", data, "--out", out, "--device", "cpu", *extra]


@needs_predict
def test_predict_pickle_checkpoint_is_refused(tmp_path, capsys, cli_data):
    evil, marker = pickle_checkpoint(tmp_path)
    assert_user_error(cli(capsys, *predict_args(evil, cli_data, tmp_path / "p")), "predict",
                      "evil.pt", "refusing")
    assert not marker.exists()
    assert not (tmp_path / "p").exists()


@needs_predict
@pytest.mark.parametrize("kind", [
    "truncated", "zero-byte", "missing", "state-dict",
    "truncated-head",  # cut to its first 10 kB: torch's zip reader raises OSError there
    "not-a-checkpoint",
])
def test_predict_broken_checkpoint(tmp_path, capsys, cli_data, cli_ckpt, kind):
    import torch

    bad = tmp_path / f"{kind}.pt"
    says = {"truncated": "truncated", "zero-byte": "truncated", "missing": "does not exist",
            "truncated-head": "truncated", "not-a-checkpoint": "corrupt",
            "state-dict": "not a decseg checkpoint"}[kind]
    if kind == "truncated":
        bad.write_bytes(cli_ckpt.read_bytes()[: cli_ckpt.stat().st_size // 2])
    elif kind == "truncated-head":
        bad.write_bytes(cli_ckpt.read_bytes()[:10000])
    elif kind == "zero-byte":
        bad.write_bytes(b"")
    elif kind == "not-a-checkpoint":
        save_rgb(bad, rgb(), format="PNG")
    elif kind == "state-dict":
        torch.save(torch.load(cli_ckpt, weights_only=True)["model"], bad)
    assert_user_error(cli(capsys, *predict_args(bad, cli_data, tmp_path / "p")), "predict", bad.name, says)
    assert not (tmp_path / "p").exists()


@needs_predict
@pytest.mark.parametrize("change", [{"model__encoder": "resnet18"}, {"data__classes": 3}, {"model__cfa": False}])
def test_predict_checkpoint_of_another_architecture(tmp_path, capsys, cli_data, cli_ckpt, change):
    bad = tampered_checkpoint(cli_ckpt, tmp_path / "other.pt", **change)
    assert_user_error(cli(capsys, *predict_args(bad, cli_data, tmp_path / "p")), "predict",
                      "other.pt", "do not fit", "another architecture")


@needs_predict
def test_predict_refuses_architecture_overrides(tmp_path, capsys, cli_data, cli_ckpt):
    assert_user_error(cli(capsys, *predict_args(cli_ckpt, cli_data, tmp_path / "p", "--set", "model.encoder=resnet18")),
                      "predict", "model.encoder", "checkpoint")
    assert_user_error(cli(capsys, *predict_args(cli_ckpt, cli_data, tmp_path / "p", "--set", "predict.tta=perhaps")),
                      "predict", "predict.tta", "expected bool")


@needs_train
def test_pickle_refusal_messages_are_one_clean_line(tmp_path, capsys, cli_data):
    evil, marker = pickle_checkpoint(tmp_path)
    results = {"predict": cli(capsys, *predict_args(evil, cli_data, tmp_path / "p")),
               "train": cli(capsys, *train_args(cli_data, tmp_path / "r", "--set", f"model.pretrained={evil}"))}
    assert not marker.exists()
    for command, (rc, out, err) in results.items():
        message = assert_user_error((rc, out, err), command, "evil.pt")
        assert "\x1b[" not in message, message  # no terminal escape codes
        assert "weights_only` set to `False`" not in message and "add_safe_globals" not in message
        assert len(message.strip().splitlines()) == 1, message


@needs_train
def test_resume_from_truncated_last_checkpoint(tmp_path, capsys, cli_data):
    run = tmp_path / "run"
    assert_ok(cli(capsys, *train_args(cli_data, run)))
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:20000])
    assert_user_error(cli(capsys, *train_args(cli_data, run, "--resume", "--set", "train.iterations=2")),
                      "train", "last.pt", "truncated")


@needs_train
def test_resume_from_checkpoint_of_another_architecture(tmp_path, capsys, cli_data, cli_ckpt):
    """A run folder whose last.pt holds another architecture than its config.yaml."""
    run = tmp_path / "run"
    assert_ok(cli(capsys, *train_args(cli_data, run)))
    tampered_checkpoint(run / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt", data__classes=3)
    rc, out, err = cli(capsys, *train_args(cli_data, run, "--resume", "--set", "train.iterations=2"))
    assert_user_error((rc, out, err), "train", "last.pt")


@needs_predict
def test_predict_bad_image_folders(tmp_path, capsys, cli_ckpt):
    imgs = tmp_path / "imgs"
    save_rgb(imgs / "a.png", rgb())
    (imgs / "notes.txt").write_text("x")
    assert_user_error(cli(capsys, "predict", "--checkpoint", cli_ckpt, "--images", imgs, "--out", tmp_path / "p",
                          "--device", "cpu"), "predict", "notes.txt", "not an image")
    (imgs / "notes.txt").unlink()
    save_rgb(imgs / "a.jpg", rgb(), quality=90)  # a.png and a.jpg would both become a.png
    assert_user_error(cli(capsys, "predict", "--checkpoint", cli_ckpt, "--images", imgs, "--out", tmp_path / "p",
                          "--device", "cpu"), "predict", "a.png", "a.jpg")
    assert_user_error(cli(capsys, "predict", "--checkpoint", cli_ckpt, "--images", tmp_path / "nope",
                          "--out", tmp_path / "p", "--device", "cpu"), "predict", "nope")
    (tmp_path / "empty").mkdir()
    assert_user_error(cli(capsys, "predict", "--checkpoint", cli_ckpt, "--images", tmp_path / "empty",
                          "--out", tmp_path / "p", "--device", "cpu"), "predict", "empty", "no image")
    assert not (tmp_path / "p").exists()


@needs_predict
@pytest.mark.parametrize("workers", [0, 1])  # 1: the error comes from a loader worker process
def test_predict_corrupt_image(tmp_path, capsys, cli_ckpt, workers):
    imgs = tmp_path / "imgs"
    save_rgb(imgs / "a.png", rgb())
    truncate(save_rgb(imgs / "b.jpg", rgb(), quality=90))
    msg = assert_user_error(cli(capsys, "predict", "--checkpoint", cli_ckpt, "--images", imgs, "--out",
                                tmp_path / "p", "--device", "cpu", "--workers", workers), "predict", "b.jpg")
    assert "Original Traceback" not in msg and "worker process" not in msg
    assert not (tmp_path / "p").exists()


@needs_predict
def test_predict_dataset_without_test_sets(tmp_path, capsys, cli_data, cli_ckpt):
    data = copy_dataset(cli_data, tmp_path / "d")
    shutil.rmtree(data / "test")
    assert_user_error(cli(capsys, *predict_args(cli_ckpt, data, tmp_path / "p")), "predict", "test sets", "--images")


@needs_predict
def test_predict_and_evaluate_odd_images_and_masks(tmp_path, capsys, cli_ckpt, cli_odd_src):
    """Every awkward-but-valid image predicts at its original size; evaluate reads the odd masks."""
    pred = tmp_path / "pred"
    assert_ok(cli(capsys, "predict", "--checkpoint", cli_ckpt, "--images", cli_odd_src / "images",
                  "--out", pred, "--device", "cpu", "--workers", 0))
    out_set = pred / "images"
    for src in (cli_odd_src / "images").iterdir():
        p = out_set / f"{src.stem}.png"
        assert p.is_file(), p
        with Image.open(src) as a, Image.open(p) as b:
            assert b.size == a.size and b.mode == "L"
    js = tmp_path / "m.json"
    assert_ok(cli(capsys, "evaluate", "--pred", out_set, "--gt", cli_odd_src / "masks", "--json", js))
    res = json.loads(js.read_text())
    (name, metrics), = res.items()
    assert metrics["n_images"] == 10
    assert np.isfinite(metrics["meanDic"]) and np.isfinite(metrics["MAE"])


@needs_predict
def test_predict_overlay_and_evaluate_with_empty_and_full_test_masks(tmp_path, capsys, cli_data, cli_ckpt):
    data = copy_dataset(cli_data, tmp_path / "d")
    masks = sorted((data / "test" / "synth-test" / "masks").iterdir())
    h, w = np.asarray(Image.open(masks[0])).shape[:2]
    save_mask(masks[0], np.zeros((h, w), bool))
    h, w = np.asarray(Image.open(masks[1])).shape[:2]
    save_mask(masks[1], np.ones((h, w), bool))
    pred = tmp_path / "pred"
    assert_ok(cli(capsys, *predict_args(cli_ckpt, data, pred, "--overlay", "--workers", 0)))
    assert len(list((pred / "synth-test").glob("*.png"))) == len(masks)
    assert len(list((tmp_path / "pred_overlay" / "synth-test").glob("*.png"))) == len(masks)
    js = tmp_path / "m.json"
    assert_ok(cli(capsys, "evaluate", "--pred", pred, "--gt", data / "test", "--json", js))
    m = json.loads(js.read_text())["synth-test"]
    assert m["n_images"] == len(masks) and np.isfinite(m["meanDic"]) and np.isfinite(m["MAE"])
    # an existing, non-empty --out is refused and left alone
    assert_user_error(cli(capsys, *predict_args(cli_ckpt, data, pred)), "predict", "pred", "already exists")
    assert len(list((pred / "synth-test").glob("*.png"))) == len(masks)


@needs_export
def test_export_refuses_pickle_checkpoint(tmp_path, capsys):
    evil, marker = pickle_checkpoint(tmp_path)
    assert_user_error(cli(capsys, "export", "--checkpoint", evil, "--onnx", tmp_path / "m.onnx"), "export",
                      "evil.pt", "refusing")
    assert not marker.exists()
    assert not (tmp_path / "m.onnx").exists()


@needs_export
def test_export_refuses_truncated_checkpoint(tmp_path, capsys, cli_ckpt):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(cli_ckpt.read_bytes()[:10000])
    assert_user_error(cli(capsys, "export", "--checkpoint", cut, "--onnx", tmp_path / "m.onnx"), "export",
                      "cut.pt", "truncated")
    assert not (tmp_path / "m.onnx").exists()


# == evaluate ===================================================================================

def eval_pair(root: Path, n: int = 3) -> tuple[Path, Path]:
    for i in range(n):
        save_mask(root / "gt" / f"c{i}.png", disk())
        save_mask(root / "pred" / f"c{i}.png", disk(r=8))
    return root / "pred", root / "gt"


def test_evaluate_bad_inputs(tmp_path, capsys):
    pred, gt = eval_pair(tmp_path)
    assert_user_error(cli(capsys, "evaluate", "--pred", tmp_path / "nope", "--gt", gt), "evaluate",
                      "nope", "does not exist")
    assert_user_error(cli(capsys, "evaluate", "--pred", pred, "--gt", tmp_path / "nogt"), "evaluate",
                      "nogt", "does not exist")
    assert_user_error(cli(capsys, "evaluate", "--pred", pred, "--gt", gt, "--workers", "0"), "evaluate", "--workers")
    truncate(pred / "c1.png")
    assert_user_error(cli(capsys, "evaluate", "--pred", pred, "--gt", gt), "evaluate", "c1.png")
    (pred / "c1.png").write_bytes(b"")
    assert_user_error(cli(capsys, "evaluate", "--pred", pred, "--gt", gt), "evaluate", "c1.png")
    (pred / "c1.png").unlink()
    assert_user_error(cli(capsys, "evaluate", "--pred", pred, "--gt", gt), "evaluate", "c1", "missing")


def test_evaluate_unwritable_outputs(tmp_path, capsys):
    pred, gt = eval_pair(tmp_path)
    (tmp_path / "a_file").write_text("x")
    for option, target in (("--json", tmp_path / "a_file" / "m.json"), ("--csv", tmp_path),
                           ("--md", tmp_path / "a_file" / "t.md")):
        assert_user_error(cli(capsys, "evaluate", "--pred", pred, "--gt", gt, option, target), "evaluate",
                          option, str(target), "cannot write")


def test_evaluate_duplicate_stems_and_non_images(tmp_path, capsys):
    pred, gt = eval_pair(tmp_path)
    save_mask(pred / "c0.bmp", disk())
    assert_user_error(cli(capsys, "evaluate", "--pred", pred, "--gt", gt), "evaluate", "c0")
    (pred / "c0.bmp").unlink()
    (pred / "notes.txt").write_text("x")
    (gt / "Thumbs.db").write_bytes(b"x")
    assert_ok(cli(capsys, "evaluate", "--pred", pred, "--gt", gt))


def test_evaluate_prediction_of_another_size(tmp_path, capsys):
    pred, gt = eval_pair(tmp_path)
    save_mask(pred / "c2.png", disk(20, 24, 4))
    rc, out, err = cli(capsys, "evaluate", "--pred", pred, "--gt", gt)
    # The toolbox resizes such a prediction; decseg does too but must say so, naming how many.
    assert "Traceback" not in err
    assert rc == 0 and "differ in size" in err, err


def test_evaluate_odd_gt_masks_work(tmp_path, capsys):
    """0/255, white-on-black RGB, 16-bit, empty and fully positive GT masks are all valid GT."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    m = disk()
    save_mask(gt / "0255.png", m)
    a = np.zeros(m.shape + (3,), np.uint8)
    a[m] = (255, 255, 255)
    Image.fromarray(a).save(gt / "rgb.png")
    Image.fromarray(np.where(m, 65535, 0).astype(np.uint16)).save(gt / "sixteen.png")
    save_mask(gt / "empty.png", np.zeros_like(m))
    save_mask(gt / "full.png", np.ones_like(m))
    for p in gt.iterdir():
        save_mask(pred / p.name, m)
    save_mask(pred / "empty.png", np.zeros_like(m))
    save_mask(pred / "full.png", np.ones_like(m))
    js = tmp_path / "m.json"
    rc, out, err = cli(capsys, "evaluate", "--pred", pred, "--gt", gt, "--json", js)
    assert_ok((rc, out, err))
    metrics = json.loads(js.read_text())["gt"]
    assert metrics["n_images"] == 5 and metrics["n_empty_gt"] == 1
    assert metrics["MAE"] == pytest.approx(0.0, abs=1e-12)  # every prediction equals its GT
    assert "empty.png" in err  # the empty GT is named in a warning (the toolbox would crash on it)


def test_evaluate_warns_about_gt_the_toolbox_reads_as_empty(tmp_path, capsys):
    """The toolbox rule is GT > 128: a 0/1 mask, or a pure-red RGB mask (grey 76), reads as empty.
    evaluate stays toolbox-exact but must say so, naming the file and what to do."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    m = disk()
    save_mask(gt / "zero_one.png", m, on=1)
    red = np.zeros(m.shape + (3,), np.uint8)
    red[m] = (255, 0, 0)
    Image.fromarray(red).save(gt / "red.png")
    for name in ("zero_one.png", "red.png"):
        save_mask(pred / name, m)
    rc, out, err = cli(capsys, "evaluate", "--pred", pred, "--gt", gt)
    assert_ok((rc, out, err))
    for name in ("zero_one.png", "red.png"):
        assert any(name in ln and "0/255" in ln for ln in err.splitlines()), err


# == summary ====================================================================================

@needs_summary
@pytest.mark.parametrize("override, says", [
    ("model.encodr=resnet18", ["model.encodr", "unknown"]),
    ("data.size=big", ["data.size", "expected int"]),
    ("data.size=65", ["data.size", "multiple of 32"]),
    ("model.cfa=sometimes", ["model.cfa", "expected bool"]),
    ("model.encoder=not_a_timm_net", ["not_a_timm_net"]),
    ("model.dcf=true", None),  # valid on its own: no error expected
])
def test_summary_bad_config(tmp_path, capsys, override, says):
    base = ["summary", "--set", "model.pretrained=false", "--set", "model.encoder=test_resnet",
            "--set", "data.size=64", "--batch", "1"]
    result = cli(capsys, *base, "--set", override)
    if says is None:
        assert_ok(result)
    else:
        assert_user_error(result, "summary", *says)


@needs_summary
def test_summary_bad_config_file_and_batch(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("model: [oops\n")
    assert_user_error(cli(capsys, "summary", "--config", bad), "summary", "c.yaml", "yaml")
    bad.write_text("- just\n- a list\n")
    assert_user_error(cli(capsys, "summary", "--config", bad), "summary", "c.yaml", "mapping")
    bad.write_text("model:\n  encoder: 18\n")
    assert_user_error(cli(capsys, "summary", "--config", bad), "summary", "c.yaml", "model.encoder", "expected str")
    assert_user_error(cli(capsys, "summary", "--batch", "0", "--set", "model.pretrained=false"), "summary", "--batch")


@needs_summary
def test_summary_unwritable_json(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    assert_user_error(cli(capsys, "summary", "--set", "model.pretrained=false", "--set", "model.encoder=test_resnet",
                          "--set", "data.size=64", "--batch", "1", "--json", tmp_path / "a_file" / "s.json"),
                      "summary", "s.json")


# == no traceback through the real entry point ===============================================

def run_module(*argv, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "decseg", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_subprocess_prepare_corrupt_image_no_traceback(tmp_path):
    src = folder_src(tmp_path / "src")
    truncate(src / "images" / "case1.png")
    r = run_module("prepare", "folder", "--src", src, "--out", tmp_path / "d", "--labeled", "2", cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "case1.png" in r.stderr
    r = run_module("--debug", "prepare", "folder", "--src", src, "--out", tmp_path / "d", "--labeled", "2",
                   cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" in r.stderr  # --debug shows it


@needs_predict
def test_subprocess_predict_pickle_checkpoint_no_traceback(tmp_path, cli_data):
    evil, marker = pickle_checkpoint(tmp_path)
    r = run_module("predict", "--checkpoint", evil, "--data", cli_data, "--out", tmp_path / "p",
                   "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "evil.pt" in r.stderr
    assert not marker.exists()
