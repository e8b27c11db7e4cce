"""The GEMM weight-gradient convolution equals nn.Conv2d: outputs, input and weight gradients."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from decseg.accel.gemm_conv import GemmWeightGradConv2d, use_gemm_weight_grad, weight_grad_gemm


@pytest.mark.parametrize("kernel,padding", [(3, 1), (3, 0), (5, 2), ((3, 1), (1, 0))])
def test_weight_grad_gemm_equals_autograd(kernel, padding):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 7, 8, dtype=torch.float64)
    w = torch.randn(5, 6, *((kernel, kernel) if isinstance(kernel, int) else kernel),
                    dtype=torch.float64, requires_grad=True)
    y = nn.functional.conv2d(x, w, padding=padding)
    go = torch.randn_like(y)
    y.backward(go)
    pad = (padding, padding) if isinstance(padding, int) else padding
    got = weight_grad_gemm(x, go, tuple(w.shape[2:]), pad)
    torch.testing.assert_close(got, w.grad, rtol=1e-12, atol=1e-12)


def _pair(channels_last: bool, bias: bool = True):
    torch.manual_seed(1)
    ref = nn.Sequential(nn.Conv2d(32, 48, 3, padding=1, bias=bias), nn.ReLU(),
                        nn.Conv2d(48, 40, 3, padding=1, bias=False))
    new = copy.deepcopy(ref)
    assert use_gemm_weight_grad(new, min_channels=16) == 2
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return ref.to(memory_format=fmt), new.to(memory_format=fmt), fmt


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gemm_conv_matches_conv2d(amp, channels_last):
    """Same forward; same gradients (fp32 up to summation order, bf16 up to bf16 rounding), also
    when the module is called twice in one step as the clean and perturbed passes do."""
    ref, new, fmt = _pair(channels_last)
    for m in new.modules():
        if isinstance(m, GemmWeightGradConv2d):
            m.use_gemm = lambda *a: True  # force the GEMM whatever the size
    x = torch.randn(3, 32, 9, 9).to(memory_format=fmt)
    results = []
    for net in (ref, new):
        xx = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            y1, y2 = net(xx), net(0.5 * xx[:2])
        if net is new:
            assert "GemmWeightGradConv" in type(y1.grad_fn).__name__  # the replacement really ran
        (y1.float().square().mean() + y2.float().mean()).backward()
        results.append((y1.detach().float(), xx.grad, {n: p.grad for n, p in net.named_parameters()}))
    (ya, ga, pa), (yb, gb, pb) = results
    tol = 2e-2 if amp else 1e-5
    assert ((ya - yb).abs().max() / ya.abs().max()).item() <= (1e-2 if amp else 1e-6)
    assert ((ga - gb).abs().max() / ga.abs().max()).item() <= tol
    for name, g in pb.items():
        assert g.dtype == torch.float32 and g.shape == pa[name].shape
        assert ((g - pa[name]).abs().max() / pa[name].abs().max()).item() <= tol, name


def test_gemm_conv_is_plain_conv2d_without_grad():
    ref, new, _ = _pair(False)
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        assert torch.equal(ref(x), new(x))
    assert ref.state_dict().keys() == new.state_dict().keys()
    with torch.no_grad():
        y = new(x)
    assert y.grad_fn is None


def test_only_wide_stride1_convs_switch():
    net = nn.Sequential(
        nn.Conv2d(1024, 1024, 3, padding=1),               # switches
        nn.Conv2d(1024, 1024, 1),                           # 1x1: a plain GEMM already
        nn.Conv2d(1024, 1024, 3, stride=2, padding=1),      # strided
        nn.Conv2d(1024, 1024, 3, padding=1, groups=2),      # grouped
        nn.Conv2d(512, 1024, 3, padding=1),                 # narrow input
        nn.Conv2d(1024, 1024, 3, padding="same"),           # string padding
    )
    assert use_gemm_weight_grad(net) == 1
    assert [type(m) is GemmWeightGradConv2d for m in net] == [True] + [False] * 5


def test_weight_cast_is_shared_within_a_step_and_renewed_after_update():
    """Under autocast the bf16 weight is cast once per optimizer step (both passes share it, so
    their gradients meet at one cast), released after the forward, and cast again after the
    weight changes, so the next step never uses stale weights."""
    from decseg.accel.gemm_conv import release_weight_casts

    _, new, _ = _pair(False)
    conv = new[0]
    x = torch.randn(2, 32, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y1, y2 = new(x), new(x.flip(-1))
        a = conv._cast_weight(torch.bfloat16)
        assert conv._cast_weight(torch.bfloat16) is a
    release_weight_casts(new)
    assert "_weight_cast" not in conv.__dict__
    (y1.float().sum() + y2.float().sum()).backward()
    assert conv.weight.grad is not None and conv.weight.grad.dtype == torch.float32
    with torch.no_grad():
        conv.weight.add_(1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        new(x)
        c = conv._cast_weight(torch.bfloat16)
        new(x)
        assert conv._cast_weight(torch.bfloat16) is c
    torch.testing.assert_close(c.detach().float(), conv.weight.detach(), rtol=1e-2, atol=1e-2)
    conv.load_state_dict({"weight": conv.weight.detach() * 2, "bias": conv.bias.detach()})
    with torch.autocast("cpu", dtype=torch.bfloat16):  # loading weights invalidates it too
        assert conv._cast_weight(torch.bfloat16) is not c
