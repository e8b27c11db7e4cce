"""The semi-supervised baselines (FixMatch, UniMatch, CPS, BCP) and their strong augmentations.

Each method on both networks (DEC-Seg and the plain U-Net) at tiny size: its terms, the
confidence threshold's effect, gradients, a 2-iteration trainer run, resume state.
"""
from __future__ import annotations

import math

import pytest
import torch

from decseg import build_model, load_config
from decseg.errors import ConfigError
from decseg.inference.checkpoint import load_checkpoint
from decseg.methods import METHOD_CLASSES, build_method
from decseg.methods import augment as A
from decseg.train.trainer import Trainer

BASELINES = ("fixmatch", "unimatch", "cps", "bcp")
NETS = {"decseg-net": [], "unet": ["model.sc=false", "model.dcf=false"]}
#: the semi-supervised terms of each method
UNSUP = {"fixmatch": ("unsup",), "unimatch": ("u_s1", "u_s2", "u_fp"), "cps": ("cps",), "bcp": ("unsup",)}
THRESHOLDED = ("fixmatch", "unimatch")


def _batch(cfg, data):
    from decseg.data import DatasetLayout, TwoStreamLoader

    loader = TwoStreamLoader(DatasetLayout(data), cfg.data, cfg.train.batch_labeled,
                             cfg.train.batch_unlabeled, seed=0, semi=True)
    return next(iter(loader))


def _method(overrides, tiny_overrides, method, net="decseg-net", seed=0):
    cfg = load_config(None, tiny_overrides + [f"train.method={method}"] + NETS[net] + overrides)
    torch.manual_seed(seed)
    return build_method(cfg, build_model(cfg))


def _losses(data, tiny_overrides, method, net, threshold):
    """A method with ``train.confidence_threshold=threshold``, one real batch and its losses."""
    m = _method([f"train.confidence_threshold={threshold}"], tiny_overrides, method, net)
    lab, unl = _batch(m.cfg, data)
    m.train()
    torch.manual_seed(1)
    losses, visuals = m(lab, unl, iteration=3)
    assert visuals == {}  # only on request
    return m, (lab, unl), losses


def _trainable(module):
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("method", BASELINES)
def test_losses_terms_and_gradients(tiny_data, tiny_overrides, method, net):
    m, (lab, unl), losses = _losses(tiny_data, tiny_overrides, method, net, 0)
    assert set(losses) == {"loss", *type(m).terms}
    for key, value in losses.items():
        assert math.isfinite(float(value.detach())), key
    for key in UNSUP[method]:
        assert float(losses[key]) > 0, f"{key} should be active with the threshold at 0"
    if "confident" in losses:
        assert float(losses["confident"]) == 1.0
    losses["loss"].backward()
    modules = [m.net] + ([m.net2] if method == "cps" else [])
    for module in modules:
        params = _trainable(module)
        missing = [n for n, p in params if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not missing, f"no finite gradient for {missing[:3]}"
        assert sum(float(p.grad.abs().sum()) for _, p in params) > 0
    _, shown = m(lab, unl, iteration=3, with_visuals=True)
    assert {"image", "mask", "o1"} <= set(shown)


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("method", THRESHOLDED)
def test_threshold_one_switches_the_unsupervised_terms_off(tiny_data, tiny_overrides, method, net):
    _, _, losses = _losses(tiny_data, tiny_overrides, method, net, 1.0)
    assert float(losses["confident"]) == 0.0
    for key in UNSUP[method]:
        assert float(losses[key]) == 0.0, f"{key} must be exactly 0 when no pixel is confident"
    # the total is then the supervised part alone (UniMatch halves it)
    scale = 0.5 if method == "unimatch" else 1.0
    assert float(losses["loss"].detach()) == pytest.approx(scale * float(losses["sup"]), rel=1e-6)


def test_paper_defaults(tiny_overrides):
    from decseg.methods import bcp, cps, fixmatch, unimatch

    cfg = load_config(None, tiny_overrides)
    assert cfg.train.confidence_threshold == 0.95
    assert fixmatch.LAMBDA_U == 1.0
    assert (unimatch.W_S1, unimatch.W_S2, unimatch.W_FP, unimatch.FP_DROPOUT) == (0.25, 0.25, 0.5, 0.5)
    assert cps.CPS_WEIGHT == 1.5
    assert (bcp.BOX_FRACTION, bcp.U_WEIGHT) == (2 / 3, 0.5)
    assert set(BASELINES) <= set(METHOD_CLASSES)


@pytest.mark.parametrize("overrides,needle", [
    (["train.method=fixmatch", "train.semi=false"], "semi"),
    (["train.method=unimatch", "train.semi=false"], "semi"),
    (["train.method=cps", "train.semi=false"], "semi"),
    (["train.method=bcp", "train.semi=false"], "semi"),
    (["train.method=unimatch", "train.batch_unlabeled=1"], "batch_unlabeled"),
    (["train.method=bcp", "train.batch_unlabeled=3"], "same number"),
    (["train.method=bcp", "train.batch_labeled=1", "train.batch_unlabeled=1"], "batch_unlabeled"),
])
def test_invalid_settings_are_rejected(tiny_overrides, overrides, needle):
    cfg = load_config(None, tiny_overrides + overrides)
    with pytest.raises(ConfigError, match=needle):
        build_method(cfg, torch.nn.Identity())


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan"])
def test_confidence_threshold_is_validated(tiny_overrides, value):
    with pytest.raises(ConfigError, match="train.confidence_threshold"):
        load_config(None, tiny_overrides + [f"train.confidence_threshold={value}"])


def test_cps_networks_differ_and_both_are_trained(tiny_overrides):
    m = _method([], tiny_overrides, "cps")
    names = [n for n, _ in m.named_parameters()]
    assert any(n.startswith("net2.") for n in names)  # registered: optimizer and DDP see it
    first, second = m.net.state_dict(), m.net2.state_dict()
    assert first.keys() == second.keys()
    assert any(not torch.equal(first[k], second[k]) for k in first if first[k].is_floating_point())
    # the second network's seed does not move the global RNG
    torch.manual_seed(5)
    expect = torch.rand(3)
    torch.manual_seed(5)
    _method([], tiny_overrides, "cps", seed=5)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), expect)


def test_feature_dropout_pass_keeps_the_clean_outputs(tiny_overrides):
    cfg = load_config(None, tiny_overrides)
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    x, xh = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 32)
    keys = list(net.state_dict())
    with torch.no_grad():
        plain = net(x, xh)
        clean, perturbed = net.forward_feature_dropout(x, xh, p=0.5)
    assert list(net.state_dict()) == keys
    for a, b, c in zip(plain, clean, perturbed):
        assert a.shape == b.shape == c.shape
        assert torch.allclose(a, b, atol=1e-5)  # eval mode: BatchNorm is per sample
        assert not torch.allclose(b, c)


# -- trainer runs -------------------------------------------------------------------------

def _train(data, run, overrides, **kw):
    trainer = Trainer(load_config(None, overrides), data, run, **kw)
    assert trainer.run() == 0
    return trainer


@pytest.mark.parametrize("method", BASELINES)
def test_trainer_runs_two_iterations(tiny_data, tiny_overrides, tmp_path, method):
    import json

    run = tmp_path / method
    _train(tiny_data, run, tiny_overrides + [f"train.method={method}", "train.iterations=2", "train.val_every=2"])
    assert (run / "checkpoints" / "best.pt").is_file()
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "loss" in r]
    assert len(steps) == 2
    for r in steps:
        assert {"sup", *UNSUP[method]} <= set(r) and not {"sc", "spc", "cc"} & set(r)
        assert math.isfinite(r["loss"])


@pytest.mark.parametrize("method", ["bcp", "cps"])
def test_resume_restores_the_teacher_and_the_second_network(tiny_data, tiny_overrides, tmp_path, method):
    run = tmp_path / method
    overrides = tiny_overrides + [f"train.method={method}", "train.iterations=2", "train.val_every=2",
                                  "model.sc=false", "model.dcf=false"]
    first = _train(tiny_data, run, overrides)
    if method == "bcp":
        saved = first.method.ema.model.state_dict()
        assert "ema" in load_checkpoint(run / "checkpoints" / "last.pt")["resume"]["method_extra"]
    else:
        saved = first.method.net2.state_dict()
    resumed = _train(tiny_data, run, overrides, resume=True)  # at iteration 2 of 2: restores only
    restored = (resumed.method.ema.model if method == "bcp" else resumed.method.net2).state_dict()
    assert saved.keys() == restored.keys()
    assert all(torch.equal(saved[k].cpu(), restored[k].cpu()) for k in saved)
    fresh = _method([], tiny_overrides, method, "unet", seed=123)
    fresh_state = (fresh.ema.model if method == "bcp" else fresh.net2).state_dict()
    assert any(not torch.equal(saved[k], fresh_state[k]) for k in saved if saved[k].is_floating_point())


# -- augmentations ------------------------------------------------------------------------

def test_cutmix_box_pixels_and_labels_come_from_the_second_image():
    torch.manual_seed(0)
    a, b = torch.rand(6, 3, 64, 64), torch.rand(6, 3, 64, 64)
    la, lb = torch.zeros(6, 64, 64, dtype=torch.long), torch.ones(6, 64, 64, dtype=torch.long)
    boxes = A.cutmix_boxes(6, 64, 64, p=1.0)
    mixed, labels = A.paste(a, b, boxes), A.paste(la, lb, boxes)
    inside = boxes.unsqueeze(1).expand_as(a)
    assert torch.equal(mixed[inside], b[inside]) and torch.equal(mixed[~inside], a[~inside])
    assert torch.equal(labels, boxes.long())  # the label map is 1 exactly in the box
    for box in boxes:
        rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert int(box.sum()) == h * w  # one rectangle
        assert 0.02 * 0.5 <= h * w / 64 ** 2 <= 0.4
    assert not A.cutmix_boxes(4, 64, 64, p=0.0).any()


def test_copy_paste_box_is_two_thirds_of_each_side():
    torch.manual_seed(0)
    box = A.copy_paste_box(64, 96, 2 / 3)
    rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
    assert int(rows.max() - rows.min() + 1) == 42 and int(cols.max() - cols.min() + 1) == 64
    assert int(box.sum()) == 42 * 64


@pytest.mark.parametrize("channels", [3, 1])
def test_colour_ops_keep_images_in_range(channels):
    torch.manual_seed(0)
    x = torch.rand(8, channels, 64, 64)
    x[0] = 0.0
    x[1] = 1.0
    for op in (A.colour_jitter, A.random_greyscale, A.gaussian_blur, A.strong_colour):
        y = op(x)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0, op.__name__
    y = A.strong_colour(x)
    assert not torch.equal(y, x)


def test_colour_ops_follow_their_probabilities_and_the_seed():
    x = torch.rand(4, 3, 32, 32)
    for op in (A.colour_jitter, A.random_greyscale, A.gaussian_blur):
        assert torch.equal(op(x, p=0.0), x)
        assert not torch.equal(op(x, p=1.0), x)
    grey = A.random_greyscale(x, p=1.0)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    torch.manual_seed(3)
    first = A.strong_colour(x)
    torch.manual_seed(3)
    assert torch.equal(A.strong_colour(x), first)


def test_hsv_round_trip_and_hue_shift():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    x[0, :, 0, 0] = 0.5  # a grey pixel: no hue
    assert torch.allclose(A.hsv_to_rgb(A.rgb_to_hsv(x)), x, atol=1e-6)
    zero = torch.zeros(2, 1, 1, 1)
    assert torch.allclose(A.shift_hue(x, zero), x, atol=1e-6)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    third = torch.full((1, 1, 1, 1), 1 / 3)
    assert torch.allclose(A.shift_hue(red, third), torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1), atol=1e-6)
