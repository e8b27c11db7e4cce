"""Precision and memory levers give the same training loss as strict fp32 NCHW.

Tiny model (resnet18, 64 px, batch 2+2), the real DEC-Seg method with generators. Dropout is set
to 0 so that every variant computes the same function (dropout masks would otherwise be drawn
in memory order, which channels_last changes).
"""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch

from decseg import load_config
from decseg.cli.benchmarking import build_train_step, synthetic_batch
from decseg.methods import build_method
from decseg.models import build_model
from decseg.io import seed_everything

TINY = ["model.encoder=resnet18", "model.pretrained=false", "data.size=64",
        "train.batch_labeled=2", "train.batch_unlabeled=2", "train.amp=off",
        "train.channels_last=false", "train.device=cpu"]

# benchmarks/levers.py: the experimental levers live outside the package, beside the benchmarks
_spec = importlib.util.spec_from_file_location(
    "levers", Path(__file__).resolve().parents[2] / "benchmarks" / "levers.py")
LEVERS_MODULE = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(LEVERS_MODULE)


def _no_dropout(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.p = 0.0


@pytest.fixture(scope="module")
def base():
    cfg = load_config(None, TINY)
    seed_everything(0)
    method = build_method(cfg, build_model(cfg))
    _no_dropout(method)
    method.train()
    lab = synthetic_batch(cfg, 2, True, torch.device("cpu"), seed=1)
    unl = synthetic_batch(cfg, 2, False, torch.device("cpu"), seed=2)
    return cfg, method, lab, unl


def _run(base, amp="off", channels_last=False, checkpointing=False, backward=False):
    """Losses (and optionally grads and BN running stats after backward) of a fresh copy."""
    cfg, method, lab, unl = base
    m = copy.deepcopy(method)
    m.net.use_activation_checkpointing(checkpointing)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    m.to(memory_format=fmt)
    lab = {k: v.contiguous(memory_format=fmt) if torch.is_tensor(v) and v.dim() == 4 else v
           for k, v in lab.items()}
    unl = {k: v.contiguous(memory_format=fmt) if torch.is_tensor(v) and v.dim() == 4 else v
           for k, v in unl.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
        losses, _ = m(lab, unl, 0)
    out = {k: float(v.detach()) for k, v in losses.items()}
    if backward:
        losses["loss"].backward()
        grads = {n: p.grad.detach().clone() for n, p in m.named_parameters() if p.grad is not None}
        stats = {n: b.detach().clone() for n, b in m.named_buffers() if "running" in n}
        return out, grads, stats
    return out


@pytest.fixture(scope="module")
def fp32(base):
    return _run(base, backward=True)


def test_components_are_active(fp32):
    losses, grads, _ = fp32
    for key in ("sup", "sc", "spc", "cc"):
        assert losses[key] > 0, key  # a comparison of zeros would prove nothing
    assert len(grads) > 100


def test_channels_last_matches_fp32(base, fp32):
    ref = fp32[0]
    got = _run(base, channels_last=True)
    for key in ("loss", "sup", "sc", "spc", "cc"):
        assert got[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-7), key


def test_checkpointing_matches_fp32_loss_grads_and_bn_stats(base, fp32):
    ref_losses, ref_grads, ref_stats = fp32
    losses, grads, stats = _run(base, checkpointing=True, backward=True)
    assert losses["loss"] == pytest.approx(ref_losses["loss"], rel=1e-6)
    assert grads.keys() == ref_grads.keys()
    for name, g in grads.items():
        scale = ref_grads[name].abs().max().clamp_min(1e-12)
        assert (g - ref_grads[name]).abs().max() / scale <= 1e-5, name
    # the recomputation in backward must not update BatchNorm running statistics a second time
    for name, s in stats.items():
        torch.testing.assert_close(s, ref_stats[name], rtol=1e-6, atol=1e-7, msg=name)


def test_bf16_autocast_close_to_fp32(base, fp32):
    ref = fp32[0]
    got = _run(base, amp="bf16", channels_last=True)
    assert got["loss"] == pytest.approx(ref["loss"], rel=2e-2)
    assert got["sup"] == pytest.approx(ref["sup"], rel=2e-2)


def test_optimizer_modes_equal_the_plain_step():
    """The trainer's step with the optimizer in backward (the single-process default), with the
    plain SGD step after backward, and with the foreach SGD lever give the same weights after
    two steps: they change memory and speed, not the arithmetic."""
    cfg = load_config(None, TINY + ["train.method=supervised"])
    results = []
    variants = ([[], "auto"], [[], "false"], [["sgd_foreach"], "false"])
    for levers, in_backward in variants:
        c = load_config(None, TINY + ["train.method=supervised", f"train.optimizer_in_backward={in_backward}"])
        adjust = LEVERS_MODULE.lever_adjustment(levers, c) if levers else None
        ts = build_train_step(c, torch.device("cpu"), seed=3, adjust=adjust)
        _no_dropout(ts.method)
        assert ts.settings["optimizer_in_backward_resolved"] is (in_backward == "auto")
        for _ in range(2):  # the second step exercises the momentum buffers
            ts.step()
        results.append({n: p.detach().clone() for n, p in ts.method.named_parameters()})
        assert all(p.grad is None for p in ts.method.parameters())  # freed after the update
    ref = results[0]
    for got in results[1:]:
        for name, p in got.items():
            torch.testing.assert_close(p, ref[name], rtol=1e-5, atol=1e-6, msg=name)
    moved = 0
    # the parameters did move (a comparison of untouched weights would prove nothing)
    seed_everything(3)
    init = build_model(cfg)
    for name, p in init.named_parameters():
        moved += int(not torch.equal(p, ref["net." + name]))
    assert moved > 10


def test_concat_passes_wiring(base):
    """With BatchNorm frozen (eval) one concatenated pass must equal the two separate passes,
    which shows the lever hands each output to the right place; in training mode it differs
    (BatchNorm statistics over 1.5x the batch), which is why it is only an opt-in lever."""
    ConcatPasses = LEVERS_MODULE.ConcatPasses

    cfg, method, lab, unl = base
    results = {}
    for mode in ("eval", "train"):
        for concat in (False, True):
            m = copy.deepcopy(method)
            m.train(mode == "train")
            if concat:
                m.net = ConcatPasses(m.net)
                m.net.prime(unl["image_p"], unl["image_half_p"])
            with torch.no_grad():
                results[mode, concat] = float(m(lab, unl, 0)[0]["loss"])
    assert results["eval", True] == pytest.approx(results["eval", False], rel=1e-5)
    assert results["train", True] != pytest.approx(results["train", False], rel=1e-5)


def test_gemm_weight_grad_step_matches_native(base):
    """A DEC-Seg training step with the GEMM weight gradient (train.conv_weight_grad=gemm) on the
    tiny model's 3x3 convolutions gives the native kernels' gradients: fp32 up to summation order,
    bf16 up to bf16 rounding."""
    from decseg.accel.gemm_conv import GemmWeightGradConv2d, use_gemm_weight_grad

    cfg, method, lab, unl = base
    for amp, tol in (("off", 1e-4), ("bf16", 5e-2)):
        grads = []
        for gemm in (False, True):
            m = copy.deepcopy(method)
            if gemm:
                # resnet18 is at most 512 wide: lower the width bar so the decoders' convs switch
                assert use_gemm_weight_grad(m, min_channels=64) > 10
                for conv in m.modules():
                    if isinstance(conv, GemmWeightGradConv2d):
                        conv.use_gemm = lambda *a: True  # the GEMM for every call, whatever the size
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
                loss = m(lab, unl, 0)[0]["loss"]
            loss.backward()
            grads.append({n: p.grad for n, p in m.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys()
        # conv biases in front of BatchNorm have zero gradient in exact arithmetic (~1e-9 of
        # rounding noise here), so the scale has a floor: 1e-3 of the largest gradient
        floor = 1e-3 * max(g.abs().max().item() for g in grads[0].values())
        worst = max(((g - grads[0][n]).abs().max() / grads[0][n].abs().max().clamp_min(floor)).item()
                    for n, g in grads[1].items())
        assert worst <= tol, (amp, worst)
