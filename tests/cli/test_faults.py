"""Faults of the environment are one clear line and exit 2, never "unexpected ... please report it".

Every fault is real: a file-size limit or an address-space limit set with ``setrlimit`` in a
child process (with SIGXFSZ ignored, so the write fails with EFBIG), a regular file where a
folder must go, a name too long for the file system, a TIFF whose header claims 419 million
pixels, a folder passed as a checkpoint. Nothing is mocked. The limits and the opset cases run
``python -m decseg`` in a subprocess (a limit must not hit pytest, and the opset case counts
every printed line).
"""
from __future__ import annotations

import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decseg.cli.main import main


def cli(capsys, *argv) -> tuple[int, str]:
    """(exit status, stderr) of ``decseg ARGV`` run in this process."""
    capsys.readouterr()
    rc = main(list(map(str, argv)))
    return rc, capsys.readouterr().err


def error_line(err: str, command: str) -> str:
    """The one ``decseg CMD: error: ...`` message, which must begin a line of its own."""
    tag = f"decseg {command}: error:"
    assert err.count(tag) == 1, f"expected one error message, stderr was:\n{err}"
    found = re.search(rf"^{re.escape(tag)}.*$", err, re.MULTILINE)
    assert found, f"the error does not start a line of its own:\n{err!r}"
    return found.group(0)


def assert_fault(result: tuple[int, str], command: str, *must_contain: str) -> str:
    """Exit 2, no traceback, no 'unexpected', one error line holding each of ``must_contain``."""
    rc, err = result
    assert rc == 2 and "Traceback" not in err and "unexpected" not in err, f"rc={rc}, stderr:\n{err}"
    line = error_line(err, command)
    missing = [text for text in must_contain if text.lower() not in line.lower()]
    assert not missing, f"{missing} not in:\n{line}"
    return line


def run_decseg(env: dict, *argv, file_size: int | None = None, memory: int | None = None
               ) -> subprocess.CompletedProcess:
    """``python -m decseg ARGV`` in a child; ``file_size``: its RLIMIT_FSIZE, ``memory``: its
    RLIMIT_AS (address space), in bytes."""
    def limit() -> None:
        if file_size:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run([sys.executable, "-m", "decseg", *map(str, argv)], env=env, capture_output=True,
                          text=True, timeout=300, preexec_fn=limit if file_size or memory else None)


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def disk(h: int = 40, w: int = 48, r: int = 10) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.where((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < r * r, 255, 0).astype(np.uint8)


def folder_src(root: Path, n: int = 4, h: int = 40, w: int = 48) -> Path:
    """A ``folder`` download of n random-noise images (incompressible) and disk masks."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(noise(h, w, i)).save(root / "images" / f"case{i}.png")
        Image.fromarray(disk(h, w)).save(root / "masks" / f"case{i}.png")
    return root


def nothing_left(out: Path) -> None:
    """Neither the final folder nor a temporary one beside it."""
    assert not out.exists(), f"{out} was published"
    left = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not left, f"left behind: {left}"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_overrides) -> Path:
    """RUN/checkpoints/best.pt holding the untrained tiny network (what predict needs is its format)."""
    from decseg import build_model, load_config
    from decseg.inference.checkpoint import save_checkpoint

    cfg = load_config(None, tiny_overrides)
    path = tmp_path_factory.mktemp("faults") / "run" / "checkpoints" / "best.pt"
    save_checkpoint(path, model_state=build_model(cfg).state_dict(), config=cfg, iteration=0, best_val_dice=None)
    return path


@pytest.fixture(scope="module")
def huge_tiff(tmp_path_factory) -> Path:
    """A real 20,480 x 20,480 uint8 TIFF (419 million pixels), zlib-compressed tiles of zeros: ~0.4 MB."""
    import tifffile

    path = tmp_path_factory.mktemp("huge") / "huge.tif"
    side, tile = 20480, 2048
    zeros = np.zeros((tile, tile), np.uint8)
    tifffile.imwrite(path, (zeros for _ in range((side // tile) ** 2)), shape=(side, side), dtype=np.uint8,
                     tile=(tile, tile), compression="zlib")
    assert path.stat().st_size < 2**20, path.stat().st_size  # small on disk, gigabytes decoded
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].shape == (side, side)
    return path


# == a real file-size limit (EFBIG) =============================================================

def test_prepare_under_a_file_size_limit(tmp_path, subprocess_env):
    src = folder_src(tmp_path / "src")  # each image is ~5.8 kB, over the 2,000-byte limit
    out = tmp_path / "data"
    r = run_decseg(subprocess_env, "prepare", "folder", "--src", src, "--out", out, "--labeled", "2",
                   file_size=2000)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr, r.stderr
    line = error_line(r.stderr, "prepare")
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "EFBIG" in line and "ulimit -f" in line
    assert "case" in line and ".png" in line, line  # the file being written
    nothing_left(out)


def test_predict_under_a_file_size_limit(tmp_path, subprocess_env, ckpt):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):  # overlays of 128 x 128 noise are ~49 kB each, over the 20,000-byte limit
        Image.fromarray(noise(128, 128, i)).save(imgs / f"im{i}.png")
    out = tmp_path / "pred"
    r = run_decseg(subprocess_env, "predict", "--checkpoint", ckpt, "--images", imgs, "--out", out,
                   "--overlay", "--device", "cpu", "--workers", "0", file_size=20000)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr, r.stderr
    line = error_line(r.stderr, "predict")
    assert "EFBIG" in line and str(out) in line, line
    nothing_left(out)
    nothing_left(tmp_path / "pred_overlay")


# == paths in the way ===========================================================================

@pytest.mark.parametrize("command", ["prepare", "predict", "train", "export"])
def test_output_below_a_regular_file(tmp_path, capsys, command, tiny_data, tiny_overrides, ckpt):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    target = notes / "run"
    src = folder_src(tmp_path / "src")
    argv = {
        "prepare": ["prepare", "folder", "--src", src, "--out", target, "--labeled", "2"],
        "predict": ["predict", "--checkpoint", ckpt, "--images", src / "images", "--out", target,
                    "--device", "cpu"],
        "train": ["train", "--data", tiny_data, "--out", target, "--set", *tiny_overrides],
        "export": ["export", "--checkpoint", ckpt, "--onnx", notes / "model.onnx"],
    }[command]
    option = "--onnx" if command == "export" else "--out"
    assert_fault(cli(capsys, *argv), command, option, str(notes), "is a file, not a folder")
    assert notes.read_text() == "mine"


def test_output_that_is_a_file_or_a_folder(tmp_path, capsys, ckpt):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    src = folder_src(tmp_path / "src")
    # --overwrite must not replace a file by a dataset folder
    assert_fault(cli(capsys, "prepare", "folder", "--src", src, "--out", notes, "--labeled", "2", "--overwrite"),
                 "prepare", str(notes), "is a file")
    assert notes.read_text() == "mine"
    assert_fault(cli(capsys, "export", "--checkpoint", ckpt, "--onnx", tmp_path), "export", "--onnx",
                 "is a folder", "model.onnx")


def test_name_too_long_for_the_file_system(tmp_path, capsys):
    src = folder_src(tmp_path / "src")
    out = tmp_path / ("x" * 300)
    assert_fault(cli(capsys, "prepare", "folder", "--src", src, "--out", out, "--labeled", "2"), "prepare",
                 "ENAMETOOLONG", "x" * 300, "shorter")


# == the pixel limit, for every decoder ========================================================

def test_huge_tiff_is_refused_by_prepare(tmp_path, capsys, huge_tiff):
    src = folder_src(tmp_path / "src")
    (src / "images" / "huge.tif").symlink_to(huge_tiff)
    Image.fromarray(disk()).save(src / "masks" / "huge.png")
    out = tmp_path / "data"
    rc, err = cli(capsys, "prepare", "folder", "--src", src, "--out", out, "--labeled", "2")
    assert rc == 2 and "Traceback" not in err, err
    assert "huge.tif" in err and "20480 x 20480 = 419,430,400 pixels" in err, err
    assert "178,956,970" in err and "DECSEG_MAX_PIXELS=420000000" in err, err
    nothing_left(out)


def test_huge_tiff_is_refused_by_evaluate(tmp_path, capsys, huge_tiff):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    (gt / "huge.tif").symlink_to(huge_tiff)
    Image.fromarray(disk()).save(pred / "huge.png")
    assert_fault(cli(capsys, "evaluate", "--pred", pred, "--gt", gt, "--workers", "1"), "evaluate",
                 "huge.tif", "419,430,400 pixels", "DECSEG_MAX_PIXELS")


def test_out_of_memory_while_decoding(tmp_path, subprocess_env, huge_tiff):
    """The limit raised for the huge TIFF, in a child with 800 MB of address space: evaluate (which
    imports no torch) runs out of memory decoding it, and says so in one line."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    (gt / "huge.tif").symlink_to(huge_tiff)
    Image.fromarray(disk()).save(pred / "huge.png")
    env = dict(subprocess_env, DECSEG_MAX_PIXELS="1000000000")
    r = run_decseg(env, "evaluate", "--pred", pred, "--gt", gt, "--workers", "1", memory=800_000_000)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "out of memory (MemoryError)" in error_line(r.stderr, "evaluate")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif", ".webp"])
@pytest.mark.parametrize("limit", [1000, 500])  # 1920 pixels: under twice the limit, and over it
def test_pixel_limit_applies_to_every_decoder(tmp_path, capsys, monkeypatch, ext, limit):
    """A 48 x 40 image against DECSEG_MAX_PIXELS: refused by prepare (data layer) and by evaluate
    (the evaluator's reader), for each format; under the limit it is read."""
    src = folder_src(tmp_path / "src", h=20, w=24)  # 480 pixels: under every limit here
    image = src / "images" / f"big{ext}"
    Image.fromarray(noise(40, 48)).save(image)
    Image.fromarray(disk()).save(src / "masks" / "big.png")
    monkeypatch.setenv("DECSEG_MAX_PIXELS", str(limit))
    rc, err = cli(capsys, "prepare", "folder", "--src", src, "--out", tmp_path / "d", "--labeled", "2")
    assert rc == 2 and "Traceback" not in err, err
    assert image.name in err and "1,920 pixels" in err and f"limit of {limit:,}" in err, err

    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    Image.fromarray(disk()).save(gt / f"big{ext}")
    Image.fromarray(disk(20, 24, 5)).save(pred / "big.png")  # under the limit: the GT is refused
    assert_fault(cli(capsys, "evaluate", "--pred", pred, "--gt", gt, "--workers", "1"), "evaluate",
                 f"big{ext}", "1,920 pixels", f"limit of {limit:,}", "DECSEG_MAX_PIXELS")
    monkeypatch.setenv("DECSEG_MAX_PIXELS", "1920")  # exactly at the limit: read
    rc, err = cli(capsys, "prepare", "folder", "--src", src, "--out", tmp_path / "d", "--labeled", "2")
    assert rc == 0, err
    assert cli(capsys, "evaluate", "--pred", pred, "--gt", gt, "--workers", "1")[0] == 0


def test_bad_pixel_limit_setting_is_named(tmp_path, capsys, monkeypatch):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for d in (gt, pred):
        d.mkdir()
        Image.fromarray(disk()).save(d / "a.png")
    monkeypatch.setenv("DECSEG_MAX_PIXELS", "lots")
    assert_fault(cli(capsys, "evaluate", "--pred", pred, "--gt", gt, "--workers", "1"), "evaluate",
                 "DECSEG_MAX_PIXELS='lots'", "whole number")


# == export ====================================================================================

@pytest.mark.parametrize("extra", [["--opset", "99"], ["--opset", "9"], ["--opset", "9", "--dynamo"]])
def test_export_opset_out_of_range(tmp_path, subprocess_env, ckpt, extra):
    onnx = tmp_path / "m.onnx"
    r = run_decseg(subprocess_env, "export", "--checkpoint", ckpt, "--onnx", onnx, *extra)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert len(lines) < 5, f"{len(lines)} lines:\n" + "\n".join(lines[:20])
    line = error_line(r.stderr, "export")
    assert f"--opset {extra[1]}" in line and " to " in line, line
    assert not onnx.exists()


def test_failing_export_is_one_line_without_the_graph_dump(tmp_path, capfd, ckpt):
    """Opset 10 (below the checked range, so called past the CLI) really fails inside torch's
    exporter, which then prints the whole graph from C++; decseg keeps that off the terminal."""
    import torch

    from decseg.errors import DecsegError
    from decseg.inference import export
    from decseg.inference.checkpoint import load_model_from_checkpoint

    net, cfg = load_model_from_checkpoint(ckpt)
    graph = export.InferenceGraph(net, cfg, cfg.data.size).eval()
    capfd.readouterr()
    with pytest.raises(DecsegError, match="failed at opset 10") as failure:
        with export._one_line_failure("the TorchScript exporter failed at opset 10", "try another --opset"):
            export._onnx_export(graph, torch.rand(1, 3, 64, 64), tmp_path / "m.onnx", 10, False)
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out + err and len((out + err).splitlines()) < 5, (out + err)[:2000]
    assert "\n" not in str(failure.value)


# == messages ==================================================================================

def test_checkpoint_path_that_is_a_folder(tmp_path, capsys, ckpt):
    run = ckpt.parent.parent
    line = assert_fault(cli(capsys, "predict", "--checkpoint", run, "--images", tmp_path, "--out", tmp_path / "p",
                            "--device", "cpu"), "predict", str(run), "is a folder")
    assert str(run / "checkpoints" / "best.pt") in line, line
    assert "does not exist" not in line
    assert_fault(cli(capsys, "export", "--checkpoint", ckpt.parent, "--onnx", tmp_path / "m.onnx"), "export",
                 "is a folder", "best.pt")


def test_yaml_syntax_error_names_the_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoder: resnet18\ntrain: [1, 2\n")
    line = assert_fault(cli(capsys, "summary", "--config", bad), "summary", str(bad), "line 4, column 1",
                        "line 3, column 8")
    _, err = cli(capsys, "summary", "--config", bad)
    assert "<unicode string>" not in err and len(err.strip().splitlines()) == 1, err
    assert line


def test_empty_images_folder_is_named(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    Image.fromarray(disk()).save(src / "masks" / "a.png")
    line = assert_fault(cli(capsys, "prepare", "folder", "--src", src, "--out", tmp_path / "d"), "prepare",
                        str(src / "images"), "is empty")
    assert "--labeled" not in line


def test_predict_error_starts_its_own_line(tmp_path, capsys, ckpt):
    """A failure in the middle of a set (the bar shows 1/2) is printed below the progress bar."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(noise(40, 48)).save(imgs / "a.png")
    Image.fromarray(noise(40, 48, 1)).save(imgs / "b.jpg", quality=90)
    data = (imgs / "b.jpg").read_bytes()
    (imgs / "b.jpg").write_bytes(data[: len(data) // 2])
    rc, err = cli(capsys, "predict", "--checkpoint", ckpt, "--images", imgs, "--out", tmp_path / "p",
                     "--device", "cpu", "--workers", "0", "--batch-size", "1")
    assert rc == 2, err
    assert "1/2" in err, err  # the bar was drawn, and stopped half-way
    assert "b.jpg" in error_line(err, "predict")
