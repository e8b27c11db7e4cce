"""DECSegNet at 64 px with a random resnet18: switches, shapes, gradients, layouts, errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import decseg
from decseg.errors import ConfigError, DataError
from decseg.models import build_generators, build_model, count_parameters

SMALL = ["model.encoder=resnet18", "model.pretrained=false", "data.size=64"]
# timm's tiny test CNN (widths 16..64) keeps the tests that do not need resnet18 fast.
TINY = ["model.encoder=test_efficientnet", "model.pretrained=false", "data.size=64"]
SWITCHES = [  # (cfa, sc, dcf); dcf needs sc
    (True, True, True), (True, True, False), (True, False, False),
    (False, True, True), (False, True, False), (False, False, False),
]


def small_cfg(*extra: str):
    return decseg.load_config(None, SMALL + list(extra))


def tiny_cfg(*extra: str):
    return decseg.load_config(None, TINY + list(extra))


@pytest.mark.parametrize("cfa,sc,dcf", SWITCHES)
def test_every_switch_combination_runs_forward_and_backward(cfa, sc, dcf):
    torch.manual_seed(0)
    net = build_model(small_cfg(f"model.cfa={cfa}", f"model.sc={sc}", f"model.dcf={dcf}"))
    assert (net.cfa is not None, net.decoder_half is not None, net.fusion is not None) == (cfa, sc, dcf)
    x = torch.rand(2, 3, 64, 64)
    o1, o2, o3 = net(x, torch.rand(2, 3, 32, 32) if sc else None)
    assert o1.shape == (2, 2, 64, 64)
    assert (o2 is None) == (not sc) and (o3 is None) == (not dcf)
    if sc:
        assert o2.shape == (2, 2, 32, 32)
    if dcf:
        assert o3.shape == (2, 2, 64, 64)
    loss = sum(o.float().pow(2).mean() for o in (o1, o2, o3) if o is not None)
    loss.backward()
    # Every parameter that takes part gets a finite gradient.
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.encoder.backbone.conv1.weight.grad.abs().sum() > 0
    pred = net.eval().predict_logits(x)
    assert pred.shape == (2, 2, 64, 64)


def test_encoder_returns_five_levels_at_strides_2_to_32():
    net = build_model(small_cfg())
    feats = net.encoder(torch.rand(2, 3, 64, 64))
    assert net.encoder.channels == [64, 64, 128, 256, 512]
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]


def test_missing_half_input_is_built_like_predict_logits():
    torch.manual_seed(1)
    net = build_model(tiny_cfg("data.size=96", "data.interpolation=bilinear")).eval()
    assert net.half_size() == 64 and net.half_size(352) == 192 and net.half_size(256) == 128
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        o1, o2, o3 = net(x)
        _, _, ref = net(x, torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear",
                                                            align_corners=False, antialias=True))
        pred = net.predict_logits(x)
    assert o2.shape[-2:] == (64, 64)
    torch.testing.assert_close(o3, ref)
    torch.testing.assert_close(pred, o3)


def test_prediction_is_o1_when_dcf_off():
    net = build_model(tiny_cfg("model.dcf=false")).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net.predict_logits(x), net(x)[0])


def _grad_vector(net):
    return torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])


def test_channels_last_matches_contiguous_forward_and_backward():
    torch.manual_seed(2)
    net = build_model(tiny_cfg())
    cl = lambda t: t.to(memory_format=torch.channels_last)  # noqa: E731
    x, xh, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 32), torch.randint(0, 2, (2, 64, 64))
    loss = lambda o: F.cross_entropy(o[0], y) + F.cross_entropy(o[2], y)  # noqa: E731
    net_cl = build_model(tiny_cfg()).to(memory_format=torch.channels_last)
    net_cl.load_state_dict(net.state_dict())
    assert net_cl.fusion.dcf5.p_in[0].weight.is_contiguous(memory_format=torch.channels_last)
    # Training mode: same outputs, and backward runs in channels_last.
    ref, out = net(x, xh), net_cl(cl(x), cl(xh))
    for a, b in zip(ref, out):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    loss(out).backward()
    assert torch.isfinite(_grad_vector(net_cl)).all()
    # Gradients are compared in eval mode: with random weights, training-mode BatchNorm over
    # 2x2 maps amplifies float32 rounding to ~2% in either layout (measured against float64).
    for m in (net, net_cl):
        m.eval().zero_grad()
    loss(net(x, xh)).backward()
    loss(net_cl(cl(x), cl(xh))).backward()
    g, g_cl = _grad_vector(net), _grad_vector(net_cl)
    assert (g - g_cl).norm() <= 1e-4 * g.norm()


def test_checkpointing_gives_same_outputs_gradients_and_bn_statistics():
    torch.manual_seed(3)
    net_ck = build_model(tiny_cfg())
    assert net_ck.use_activation_checkpointing(True) is True
    net = build_model(tiny_cfg())
    net.load_state_dict(net_ck.state_dict())
    assert net.fusion.checkpointing is False  # off unless the execution plan asks
    calls = {id(net): 0, id(net_ck): 0}
    for m in (net, net_ck):  # count runs of the widest fusion level
        def counted(p, q, m=m, run=m.fusion._deepest):
            calls[id(m)] += 1
            return run(p, q)
        m.fusion._deepest = counted
    x, xh = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 32)
    for m in (net, net_ck):
        m(x, xh)[2].sum().backward()
    # The checkpointed level runs again in backward; the plain one does not.
    assert (calls[id(net)], calls[id(net_ck)]) == (1, 2)
    torch.testing.assert_close(net.fusion.dcf5.p_in[0].weight.grad, net_ck.fusion.dcf5.p_in[0].weight.grad)
    # The recomputation in backward must not update BatchNorm running statistics a second time.
    torch.testing.assert_close(net.fusion.bottleneck[0][1].running_mean, net_ck.fusion.bottleneck[0][1].running_mean)


@pytest.mark.parametrize("channels", [1, 4])
def test_non_rgb_input_goes_through_a_shared_adapter(channels):
    net = build_model(tiny_cfg(f"data.channels={channels}"))
    assert net.encoder.adapter.weight.shape == (3, channels, 3, 3)
    o1, o2, o3 = net(torch.rand(2, channels, 64, 64))
    o3.mean().backward()
    assert o3.shape == (2, 2, 64, 64)
    assert net.encoder.adapter.weight.grad.abs().sum() > 0
    gens = build_generators(tiny_cfg(f"data.channels={channels}"))
    assert gens[0](o3.detach()).shape == (2, channels, 64, 64)


def test_generators_map_logits_to_images_with_paper_size():
    gens = build_generators(small_cfg())
    assert len(gens) == 2 and gens[0] is not gens[1]
    assert [count_parameters(g) for g in gens] == [1_748_483, 1_748_483]
    assert gens[1](torch.randn(2, 2, 64, 64)).shape == (2, 3, 64, 64)


def test_wrong_channel_count_at_forward_is_a_clear_error():
    net = build_model(tiny_cfg())
    with pytest.raises(DataError, match=r"data.channels=3.*\(2, 1, 64, 64\)"):
        net(torch.rand(2, 1, 64, 64))


def test_size_not_multiple_of_32_is_rejected():
    with pytest.raises(ConfigError, match="data.size=100"):
        small_cfg("data.size=100")
    net = build_model(tiny_cfg())
    with pytest.raises(DataError, match="multiples of 32"):
        net(torch.rand(2, 3, 80, 72))


def test_training_batch_of_one_with_cfa_is_a_clear_error():
    net = build_model(tiny_cfg())
    with pytest.raises(DataError, match="batch of 1"):
        net(torch.rand(1, 3, 64, 64))
    net.eval()
    assert net(torch.rand(1, 3, 64, 64))[2].shape == (1, 2, 64, 64)


def test_dcf_without_sc_is_rejected():
    with pytest.raises(ConfigError, match="model.dcf=true needs model.sc=true"):
        small_cfg("model.sc=false")


@pytest.mark.parametrize("name,pattern", [
    ("resnet181", "not a timm model name.*resnet18"),
    ("efficientvit_m0", "strides 2, 4, 8, 16 and 32.*\\[16, 32, 64\\]"),  # starts at stride 16
])
def test_unusable_encoders_raise_config_error_naming_working_ones(name, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        build_model(small_cfg(f"model.encoder={name}"))
    assert "res2net50d" in str(info.value)


@pytest.mark.parametrize("name,channels", [
    ("efficientnet_b0", [16, 24, 40, 112, 320]),
    ("test_resnet", [32, 32, 48, 192, 96]),  # widths need not grow with depth
])
def test_other_timm_cnns_take_widths_from_feature_info(name, channels):
    net = build_model(small_cfg(f"model.encoder={name}"))
    assert net.encoder.channels == channels
    assert net.fusion.dcf5.p_in[0].weight.shape[0] == channels[-1]
    o = net.eval()(torch.rand(1, 3, 64, 64))
    assert o[2].shape == (1, 2, 64, 64)
