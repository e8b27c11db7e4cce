"""``decseg benchmark`` writes the documented JSON keys with sensible values; the released-style
reference computes the same loss as the project's method; the sweep draws its curves."""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from decseg import load_config
from decseg.cli.main import main
from decseg.cli.benchmarking import PeakMemory, measure, synthetic_batch
from decseg.methods import build_method
from decseg.models import build_generators, build_model
from decseg.io import seed_everything

ROOT = Path(__file__).resolve().parents[2]
TINY_SET = ["--set", "model.encoder=resnet18", "--set", "model.pretrained=false", "--size", "64",
            "--device", "cpu"]


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_train_json(tmp_path):
    out = tmp_path / "train.json"
    rc = main(["benchmark", "train", *TINY_SET, "--batch-labeled", "2", "--batch-unlabeled", "2",
               "--steps", "2", "--warmup", "0", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["step_seconds"] > 0 and len(r["step_seconds_all"]) == 2
    assert r["peak_rss_gb"] > 0.1  # a python process with torch and a model is well above 100 MB
    assert r["peak_rss_sampled_gb"] <= r["peak_rss_gb"]
    assert (r["size"], r["half_size"], r["batch_labeled"], r["batch_unlabeled"], r["batch"]) == (64, 32, 2, 2, 4)
    assert r["amp"] == "bf16" and r["channels_last"] == "auto"  # project defaults, resolved:
    assert r["channels_last_resolved"] is True and r["optimizer_in_backward_resolved"] is True
    assert r["gemm_weight_grad_convs"] == 0  # resnet18 has no convolution 1024 channels wide
    assert r["device"] == "cpu" and r["encoder"] == "resnet18"
    assert r["torch"] == torch.__version__ and r["cpu_name"]
    assert r["loss"] > 0 and r["kind"] == "train"


def test_benchmark_predict_json_and_agreement(tmp_path):
    out = tmp_path / "predict.json"
    rc = main(["benchmark", "predict", *TINY_SET, "--batch-size", "2", "--steps", "1", "--warmup", "1",
               "--amp", "bf16", "--agreement", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["images_per_second"] > 0
    assert r["images_per_second"] == pytest.approx(2 / r["step_seconds"])
    assert r["peak_rss_gb"] > 0.1 and r["amp"] == "bf16" and r["batch_size"] == 2
    assert 0.9 <= r["pixel_agreement_vs_fp32"] <= 1.0


def test_benchmark_rejects_bad_settings(capsys):
    # the perturbed pass would see one unlabeled sample: BatchNorm cannot train on that
    rc = main(["benchmark", "train", *TINY_SET, "--batch-labeled", "2", "--batch-unlabeled", "1"])
    assert rc == 2
    assert "batch_unlabeled" in capsys.readouterr().err
    rc = main(["benchmark", "train", *TINY_SET, "--steps", "0"])
    assert rc == 2
    assert "--steps" in capsys.readouterr().err


def test_measure_tracks_peak_of_a_big_allocation():
    held = []

    def step():
        held.append(torch.ones(64 * 1024 * 1024 // 4))  # 64 MiB, touched so it is resident

    timing = measure(step, steps=2, warmup=1, device=torch.device("cpu"))
    assert len(timing.seconds) == 2 and len(timing.warmup_seconds) == 1
    # three 64 MiB tensors were alive at the end; the sampler or ru_maxrss must have seen them
    assert timing.memory["peak_rss_gb"] * 1024 >= 3 * 64
    with PeakMemory(torch.device("cpu")) as mem:
        pass
    assert mem.result()["peak_rss_gb"] > 0


def test_released_style_loss_equals_project_method():
    """Both implementations of the objective (docs/METHOD.md) agree: an independent check of each."""
    released = _load_script("released_style")
    cfg = load_config(None, ["model.encoder=resnet18", "model.pretrained=false", "data.size=64",
                             "train.batch_labeled=2", "train.batch_unlabeled=2"])
    seed_everything(0)
    net = build_model(cfg)
    generators = build_generators(cfg)
    for m in generators.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0  # both sides must compute the same function
    method = build_method(cfg, copy.deepcopy(net))
    method.generators = copy.deepcopy(generators)
    lab = synthetic_batch(cfg, 2, True, torch.device("cpu"), seed=5)
    unl = synthetic_batch(cfg, 2, False, torch.device("cpu"), seed=6)
    net.train(), generators.train(), method.train()
    with torch.no_grad():
        ours, _ = method(lab, unl, 0)
        theirs = released.released_losses(net, generators, lab, unl, lam=1.0)
    for key in ("loss", "sup", "sc", "spc", "cc"):
        assert float(theirs[key]) > 0, key
        assert float(ours[key]) == pytest.approx(float(theirs[key]), rel=1e-5), key


def test_released_style_script_runs(tmp_path):
    released = _load_script("released_style")
    out = tmp_path / "released.json"
    rc = released.main(["train", "--size", "64", "--batch-labeled", "2", "--batch-unlabeled", "2",
                        "--set", "model.encoder=resnet18", "--set", "model.pretrained=false",
                        "--steps", "1", "--warmup", "0", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["profile"] == "released" and r["amp"] == "off" and r["channels_last"] is False
    assert r["step_seconds"] > 0 and r["peak_rss_gb"] > 0.1


def test_sweep_plot_only(tmp_path):
    sweep = _load_script("sweep")
    base = {"kind": "train", "encoder": "res2net50d", "cpu_name": "test cpu", "torch": "x"}
    for profile, k in (("project", 1.0), ("released", 2.5)):
        for size in (224, 352):
            for batch in (4, 6):
                point = dict(base, profile=profile, size=size, batch=batch,
                             step_seconds=k * size * batch / 1000, peak_rss_gb=k * batch)
                (tmp_path / f"{profile}_S{size}_B{batch}.json").write_text(json.dumps(point))
    assert sweep.main(["--out", str(tmp_path), "--plot-only"]) == 0
    png = tmp_path / "scaling.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads((tmp_path / "sweep.json").read_text())) == 8
    # batch 2 = 1 + 1 cannot train DEC-Seg; the sweep says so instead of crashing
    args = type("A", (), {"force": False})()
    assert sweep.run_point("project", 224, 2, args, tmp_path)["status"] == "invalid"


def test_gpu_check_script_tiny(tmp_path):
    """The prepared GPU script runs end to end on the CPU in its tiny mode."""
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--tiny"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable,
                               "GPU_CHECK_OUT": str(tmp_path / "out")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "it/s" in proc.stdout and "images/s" in proc.stdout
    r = json.loads((tmp_path / "out" / "gpu_check_train.json").read_text())
    assert r["iterations"] >= 2 and r["iterations_per_second"] > 0
