"""Each method and each valid switch combination: one real batch, finite losses, off parts are 0."""
from __future__ import annotations

import math

import pytest
import torch

from decseg import build_model, load_config
from decseg.methods import build_method
from decseg.errors import ConfigError



def _batch(cfg, data, semi):
    from decseg.data import DatasetLayout, TwoStreamLoader

    loader = TwoStreamLoader(DatasetLayout(data), cfg.data, cfg.train.batch_labeled,
                             cfg.train.batch_unlabeled, seed=0, semi=semi)
    return next(iter(loader))


# (overrides, components expected to be non-zero)
COMBOS = [
    ([], {"sup", "sc", "spc", "cc"}),
    (["model.cfa=false"], {"sup", "sc", "spc", "cc"}),
    (["model.dcf=false"], {"sup", "sc", "spc", "cc"}),
    (["model.sc=false", "model.dcf=false"], {"sup", "spc", "cc"}),
    (["train.cc=false"], {"sup", "sc", "spc"}),
    (["train.spc=false", "train.cc=false"], {"sup", "sc"}),
    (["model.sc=false", "model.dcf=false", "train.cc=false"], {"sup", "spc"}),
    (["model.sc=false", "model.dcf=false", "train.spc=false", "train.cc=false"], {"sup"}),
    (["train.semi=false"], {"sup", "sc"}),
    (["train.semi=false", "model.sc=false", "model.dcf=false"], {"sup"}),
    (["train.method=supervised", "train.semi=false"], {"sup"}),
    (["train.method=supervised"], {"sup"}),  # supervised ignores the unlabeled stream
    (["train.method=meanteacher"], {"sup", "mt"}),
]


@pytest.mark.parametrize("overrides,nonzero", COMBOS, ids=[" ".join(c[0]) or "full" for c in COMBOS])
def test_method_losses(tiny_data, tiny_overrides, overrides, nonzero):
    cfg = load_config(None, tiny_overrides + overrides)
    torch.manual_seed(0)
    method = build_method(cfg, build_model(cfg))
    semi = type(method).uses_unlabeled(cfg)
    lab, unl = _batch(cfg, tiny_data, semi)
    assert (unl is not None) == semi
    method.train()
    losses, visuals = method(lab, unl, iteration=5)
    assert visuals == {}  # only on request
    assert set(losses) == {"loss", *type(method).terms}  # each method reports its own terms
    for key in ("loss", *type(method).terms):
        if key == "lambda":
            continue
        value = float(losses[key].detach())
        assert math.isfinite(value)
        if key == "loss":
            continue
        if key in nonzero:
            assert value > 0, f"{key} should be active"
        else:
            assert value == 0.0, f"{key} is switched off and must stay exactly 0"
    losses["loss"].backward()
    grads = [p.grad for p in method.net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads[:5])
    if "cc" in nonzero:  # the generators are trained by the same loss
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.generators[0].parameters()
                   if p.dim() > 1)


def test_total_is_sup_plus_lambda_times_consistency(tiny_data, tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["train.consistency=0.5"])
    torch.manual_seed(0)
    method = build_method(cfg, build_model(cfg))
    lab, unl = _batch(cfg, tiny_data, True)
    losses, _ = method(lab, unl, iteration=0)
    expect = losses["sup"] + 0.5 * (losses["sc"] + losses["spc"] + losses["cc"])
    assert float(losses["loss"].detach()) == pytest.approx(float(expect), rel=1e-5)
    assert float(losses["lambda"]) == 0.5


def test_cc_gradients_reach_the_segmentation_network(tiny_data, tiny_overrides):
    # With sup/sc/spc unchanged, adding L_cc must change the network's gradients.
    grads = {}
    for cc in ("true", "false"):
        cfg = load_config(None, tiny_overrides + [f"train.cc={cc}"])
        torch.manual_seed(0)
        method = build_method(cfg, build_model(cfg))
        lab, unl = _batch(cfg, tiny_data, True)
        torch.manual_seed(1)
        method(lab, unl, 0)[0]["loss"].backward()
        head = [p for n, p in method.net.named_parameters() if p.requires_grad][-1]
        grads[cc] = head.grad.clone()
    assert not torch.allclose(grads["true"], grads["false"])


@pytest.mark.parametrize("overrides,needle", [
    (["train.batch_unlabeled=1"], "batch_unlabeled"),
    (["train.method=supervised", "train.batch_labeled=1"], "BatchNorm"),
    (["train.semi=false", "train.batch_labeled=1"], "BatchNorm"),
    (["train.method=meanteacher", "train.semi=false"], "semi"),
    (["train.method=meanteacher", "train.batch_unlabeled=1"], "batch_unlabeled"),
    (["train.semi=true", "train.batch_unlabeled=0"], "batch_unlabeled"),
])
def test_invalid_settings_are_rejected(tiny_overrides, overrides, needle):
    cfg = load_config(None, tiny_overrides + overrides)
    with pytest.raises(ConfigError, match=needle):
        build_method(cfg, torch.nn.Identity())


def test_config_level_rejections(tiny_overrides):
    with pytest.raises(ConfigError, match="train.spc"):
        load_config(None, tiny_overrides + ["train.spc=false", "train.cc=true"])
    with pytest.raises(ConfigError, match="model.sc"):
        load_config(None, tiny_overrides + ["model.sc=false", "model.dcf=true"])


def test_meanteacher_ema_update_and_state(tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["train.method=meanteacher", "train.ema_decay=0.5"])
    torch.manual_seed(0)
    method = build_method(cfg, build_model(cfg))
    teacher = method.ema.model
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not any(n.startswith("ema") for n, _ in method.named_parameters())  # outside DDP/optimizer
    s0 = next(method.net.parameters())
    t0 = next(teacher.parameters())
    with torch.no_grad():
        s0.add_(1.0)
    before = t0.clone()
    method.after_step(iteration=10)  # decay = min(1 - 1/11, 0.5) = 0.5
    assert torch.allclose(t0, 0.5 * before + 0.5 * s0)
    state = method.extra_state()
    other = build_method(cfg, build_model(cfg))
    other.load_extra_state(state)
    assert torch.equal(next(other.ema.model.parameters()), t0)
