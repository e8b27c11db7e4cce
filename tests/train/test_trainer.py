"""The training loop in-process: logs, checkpoints, methods, resume, precision, divergence."""
from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from decseg import load_config
from decseg.cli.main import main as cli_main
from decseg.inference.checkpoint import load_checkpoint
from decseg.train.trainer import Trainer, TrainingDiverged
from decseg.errors import ConfigError


def _train(data, run, overrides, **kw):
    cfg = load_config(None, overrides)
    return Trainer(cfg, data, run, **kw).run()


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method,extra", [("supervised", None), ("meanteacher", "mt")])
def test_baseline_methods_train(tiny_data, tiny_overrides, tmp_path, method, extra):
    run = tmp_path / method
    assert _train(tiny_data, run, tiny_overrides + [f"train.method={method}", "train.iterations=2",
                                                   "train.val_every=2"]) == 0
    steps = [r for r in _log(run) if "loss" in r]
    assert len(steps) == 2
    for r in steps:
        # each method logs its own terms, not DEC-Seg's
        assert not {"sc", "spc", "cc"} & set(r)
        assert math.isfinite(r["loss"]) and r["sup"] > 0
        if extra:
            assert extra in r and math.isfinite(r[extra])
    assert (run / "checkpoints" / "best.pt").is_file()


def _check_run_outputs(run):
    """config.yaml, log.jsonl, last.pt/best.pt and TensorBoard of a 4-iteration DEC-Seg run."""
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["train"]["iterations"] == 4 and stored["model"]["encoder"] == "test_resnet"
    records = _log(run)
    steps = [r for r in records if "loss" in r]
    vals = [r for r in records if "val_dice" in r]
    assert [r["iter"] for r in steps] == [1, 2, 3, 4]
    assert [r["iter"] for r in vals] == [2, 4]
    assert steps[0]["lr"] == pytest.approx(0.01)
    assert steps[1]["lr"] == pytest.approx(0.01 * (1 - 1 / 4) ** 0.9)
    for r in steps:
        for key in ("loss", "sup", "sc", "spc", "cc"):
            assert math.isfinite(r[key]) and r[key] > 0
    assert all(0.0 <= v["val_dice"] <= 1.0 for v in vals)
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert last["iteration"] == 4 and "resume" in last and "resume" not in best
    assert set(last["resume"]) >= {"method", "optimizer", "scaler", "ranks"}
    assert any(k.startswith("generators.") for k in last["resume"]["method"])
    assert last["best_val_dice"] == max(v["val_dice"] for v in vals)
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000  # scalars and images were written


def test_resume_matches_an_uninterrupted_run(tiny_data, tiny_overrides, tmp_path):
    """4 iterations straight vs 2, stop, then resume to 4: same weights and logged losses.

    The straight run also checks what a run writes.
    """
    over = tiny_overrides + ["train.iterations=4", "train.val_every=2", "train.image_every=2"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(tiny_data, straight, over) == 0
    _check_run_outputs(straight)
    assert _train(tiny_data, split, over, stop_after=2) == 0
    assert load_checkpoint(split / "checkpoints" / "last.pt")["iteration"] == 2
    assert _train(tiny_data, split, over, resume=True) == 0
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    assert b["iteration"] == 4
    for k in a["model"]:
        assert torch.allclose(a["model"][k].float(), b["model"][k].float(), atol=1e-6, rtol=1e-5), k
    la, lb = _log(straight), _log(split)
    assert [r["iter"] for r in la] == [r["iter"] for r in lb]
    for ra, rb in zip(la, lb):
        for key in ra:
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-7), (ra["iter"], key)


def test_bf16_autocast_on_cpu(tiny_data, tiny_overrides, tmp_path):
    run = tmp_path / "bf16"
    assert _train(tiny_data, run, tiny_overrides + ["train.amp=bf16", "train.channels_last=true",
                                                   "train.iterations=2", "train.val_every=2"]) == 0
    steps = [r for r in _log(run) if "loss" in r]
    assert len(steps) == 2 and all(math.isfinite(r["loss"]) for r in steps)
    weights = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert all(v.dtype != torch.bfloat16 for v in weights.values())  # fp32 master weights


def test_fp16_on_cpu_suggests_bf16(tiny_data, tiny_overrides, tmp_path):
    with pytest.raises(ConfigError, match="bf16"):
        _train(tiny_data, tmp_path / "fp16", tiny_overrides + ["train.amp=fp16", "train.iterations=1"])


def test_without_val_split_best_is_last(tiny_data_noval, tiny_overrides, tmp_path, capsys):
    run = tmp_path / "noval"
    assert _train(tiny_data_noval, run, tiny_overrides + ["train.iterations=2", "train.val_every=1",
                                                         "train.semi=false", "train.spc=false",
                                                         "train.cc=false"]) == 0
    err = capsys.readouterr().err
    assert err.count("no val split") == 1
    assert not [r for r in _log(run) if "val_dice" in r]
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["iteration"] == 2
    assert all(torch.equal(last["model"][k], best["model"][k]) for k in last["model"])


class NaNLossAt(Trainer):
    """A trainer whose method's total loss turns NaN at the given (0-based) iterations, through a
    forward hook on the method: the trainer's own non-finite handling is what is tested."""

    nan_at: tuple[int, ...] = ()

    def _setup(self) -> None:
        super()._setup()

        def poison(module, args, output):
            losses, visuals = output
            if args[2] in self.nan_at:
                losses = {**losses, "loss": losses["loss"] * float("nan")}
            return losses, visuals

        self.method.register_forward_hook(poison)


def test_nonfinite_steps_are_skipped_then_training_stops(tiny_data, tiny_overrides, tmp_path, capsys):
    run = tmp_path / "nan"
    over = tiny_overrides + ["train.iterations=8", "train.val_every=3", "train.max_nonfinite=2"]
    trainer = NaNLossAt(load_config(None, over), tiny_data, run)
    trainer.nan_at = (1, 3, 4)  # NaN at steps 2, 4 and 5 (1-based)
    with pytest.raises(TrainingDiverged, match="2 consecutive non-finite"):
        trainer.run()
    err = capsys.readouterr().err
    assert "non-finite loss at iteration 2" in err and "step skipped" in err
    steps = {r["iter"]: r for r in _log(run) if "loss" in r}
    assert steps[2]["loss"] is None and math.isfinite(steps[3]["loss"])  # one skip, then recovery
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["iteration"] == 3  # the checkpoint from before the divergence is kept
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


def test_cli_resume_rules(tiny_data, tiny_overrides, tmp_path, capsys):
    run = tmp_path / "cli"
    sets = [a for o in tiny_overrides + ["train.iterations=1", "model.sc=false", "model.dcf=false",
                                      "train.cc=false"] for a in ("--set", o)]
    base = ["train", "--data", str(tiny_data), "--out", str(run)]
    assert cli_main(base + sets) == 0
    # the same folder again without --resume
    assert cli_main(base + sets) == 2
    assert "--resume" in capsys.readouterr().err
    # --resume may not change the architecture
    assert cli_main(base + ["--resume", "--set", "model.encoder=resnet18"]) == 2
    assert "model.encoder" in capsys.readouterr().err
    # --resume with more iterations continues from the stored config
    assert cli_main(base + ["--resume", "--set", "train.iterations=2"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 2
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["sc"] is False


def test_fully_supervised_preset_trains(tiny_data, tiny_overrides, tmp_path):
    cfg = load_config("polyp_full", tiny_overrides + ["train.batch_labeled=2", "train.iterations=1"])
    assert cfg.train.method == "supervised" and not cfg.train.semi
    run = tmp_path / "full"
    assert Trainer(cfg, tiny_data, run).run() == 0
    assert [r["iter"] for r in _log(run) if "loss" in r] == [1]
