"""Checkpoints: weights_only loading, refusals with clear messages, atomic saves under write errors."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from decseg import build_model, load_config
from decseg.inference.checkpoint import (
    FORMAT_VERSION, architecture_differences, from_safe, load_checkpoint, load_model_from_checkpoint,
    save_checkpoint, to_safe,
)
from decseg.errors import CheckpointError


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["model.sc=false", "model.dcf=false"])
    torch.manual_seed(0)
    net = build_model(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "w.pt"
    save_checkpoint(path, model_state=net.state_dict(), config=cfg, iteration=7, best_val_dice=0.5,
                    resume={"np": np.arange(3, dtype=np.uint32), "scalar": np.float32(2.5), "t": (1, 2)})
    return cfg, net, path


def test_roundtrip_weights_only(saved):
    cfg, net, path = saved
    raw = torch.load(path, weights_only=True)  # loads without trusting pickle
    assert raw["format_version"] == FORMAT_VERSION and raw["iteration"] == 7
    assert raw["best_val_dice"] == 0.5 and raw["config"]["model"]["encoder"] == "test_resnet"
    resume = from_safe(raw["resume"])
    assert resume["np"].dtype == np.uint32 and resume["np"].tolist() == [0, 1, 2]
    assert resume["scalar"] == np.float32(2.5) and resume["t"] == [1, 2]
    loaded, lcfg = load_model_from_checkpoint(path)
    assert lcfg.model.pretrained is False and not loaded.training
    for (k, a), (k2, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_to_safe_is_plain_containers():
    enc = to_safe({"a": [np.int64(3), np.zeros((2, 2), np.float64)]})
    assert isinstance(enc["a"][1]["__ndarray__"], torch.Tensor)
    dec = from_safe(enc)
    assert dec["a"][0] == 3 and dec["a"][1].shape == (2, 2)


class _Evil:
    """Unpickling this would call print(): code execution that weights_only must refuse."""

    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_pickle_payload_is_refused(tmp_path, capsys):
    Evil = _Evil
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "config": {}, "model": {}, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert "code ran" not in capsys.readouterr().out


def test_truncated_file_is_refused(saved, tmp_path):
    data = saved[2].read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt.*truncated or corrupt"):
        load_checkpoint(cut)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt"):
        load_checkpoint(empty)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_other_architecture_names_the_keys(saved, tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["model.encoder=resnet18", "data.classes=3"])
    diffs = architecture_differences(saved[0], cfg)
    assert any(d.startswith("model.encoder: checkpoint 'test_resnet' vs config 'resnet18'") for d in diffs)
    assert any(d.startswith("data.classes") for d in diffs) and any(d.startswith("model.sc") for d in diffs)
    from decseg.inference.checkpoint import check_compatible

    with pytest.raises(CheckpointError, match="model.encoder.*data.classes|data.classes.*model.encoder"):
        check_compatible(load_checkpoint(saved[2]), cfg, saved[2])


def test_write_error_keeps_previous_checkpoint(saved, tmp_path):
    """A real write failure (file-size limit, like a full disk) leaves the old file intact."""
    cfg, _, src = saved
    target = tmp_path / "last.pt"
    target.write_bytes(src.read_bytes())
    before = target.read_bytes()
    script = textwrap.dedent(f"""
        import resource, signal, sys, torch
        from decseg.inference.checkpoint import save_checkpoint
        from decseg.errors import CheckpointError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            save_checkpoint({str(target)!r}, model_state={{"w": torch.zeros(1_000_000)}},
                            config={{"data": {{}}}}, iteration=9, best_val_dice=None)
        except CheckpointError as e:
            print("ERR", e); sys.exit(3)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    assert "could not write checkpoint" in r.stdout and "previous checkpoint" in r.stdout
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind
