"""Training with transformer encoders (64 px, random init): DEC-Seg and UniMatch's feature
perturbation, bf16 autocast with channels_last, resume, prediction with TTA, two-process DDP."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from decseg import load_config
from decseg.cli.main import main
from decseg.inference.checkpoint import load_checkpoint
from decseg.train.trainer import Trainer


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def _losses(run: Path) -> list[dict]:
    return [r for r in _log(run) if "loss" in r]


@pytest.mark.parametrize("encoder,method", [("pvt_v2_b0", "decseg"), ("vit_small_patch14_dinov2", "unimatch")])
def test_transformer_encoder_trains_in_bf16_channels_last_resumes_and_predicts(
        encoder, method, tiny_data, tiny_overrides, tmp_path):
    over = tiny_overrides + [f"model.encoder={encoder}", f"train.method={method}", "train.amp=bf16",
                             "train.channels_last=true", "train.iterations=2", "train.val_every=2"]
    run = tmp_path / "run"
    assert Trainer(load_config(None, over), tiny_data, run, stop_after=1).run() == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 1
    assert Trainer(load_config(None, over), tiny_data, run, resume=True).run() == 0
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["iteration"] == 2
    assert any(k.startswith("encoder.stem.") for k in last["model"])
    rows = _losses(run)
    assert [r["iter"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in rows)
    if method == "unimatch":
        assert all(np.isfinite(r["u_fp"]) for r in rows)  # the feature-perturbed stream ran
    pred = tmp_path / "pred"
    images = Path(tiny_data) / "val" / "images"
    assert main(["predict", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--images", str(images),
                 "--out", str(pred), "--tta"]) == 0
    written = sorted((pred / "images").glob("*.png"))
    assert len(written) == len(list(images.iterdir()))
    assert set(np.unique(np.asarray(Image.open(written[0])))) <= {0, 255}


def test_torchrun_two_processes_agree_with_a_transformer(tiny_data, tiny_overrides, subprocess_env, tmp_path):
    run = tmp_path / "ddp"
    digest = Path(__file__).with_name("ddp_weights_digest.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(digest),
           str(tiny_data), str(run), *tiny_overrides, "model.encoder=pvt_v2_b0", "train.iterations=2",
           "train.val_every=2"]
    r = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    d0, d1 = (json.loads((run / "digest" / f"rank{i}.json").read_text()) for i in (0, 1))
    assert d0["world_size"] == 2 and d0["iteration"] == d1["iteration"] == 2
    assert d0["sha256"] == d1["sha256"]  # gradients (stem included) were averaged: identical weights
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 2
