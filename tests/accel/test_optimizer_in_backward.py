"""SGD applied during backward equals torch.optim.SGD's step after backward.

Two separately computed backward passes may round a sum differently (vectorised reductions
depend on memory alignment), so runs with their own backward are compared to 1e-6; the update
kernels themselves are compared bit for bit on identical gradients.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from decseg.accel.optimizer_in_backward import SGDInBackward
from decseg.accel.plan import resolve_in_backward
from decseg.train.optim import build_optimizer
from decseg.errors import ConfigError


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 2, 1))


def _loss(net, x):
    # the same module used twice, as the clean and perturbed passes use the network
    return net(x).square().mean() + net(x.flip(-1)).mean()


def test_in_backward_equals_step_after_backward():
    x = torch.randn(4, 3, 10, 10)
    plain, hooked = _net(), _net()
    opt_a = build_optimizer(plain.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt_b = build_optimizer(hooked.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    in_bw = SGDInBackward(opt_b)
    for it in range(3):
        for g in (*opt_a.param_groups, *opt_b.param_groups):
            g["lr"] = 0.1 * (1 - it / 3)
        _loss(plain, x).backward()
        opt_a.step()
        opt_a.zero_grad(set_to_none=True)
        in_bw.backward_and_step(_loss(hooked, x))
        assert all(p.grad is None for p in hooked.parameters())
    for (name, a), b in zip(plain.named_parameters(), hooked.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9, msg=name)
    # same optimizer state: a checkpoint from either mode resumes the other
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for k, st in sa["state"].items():
        torch.testing.assert_close(st["momentum_buffer"], sb["state"][k]["momentum_buffer"],
                                   rtol=1e-6, atol=1e-9)
    assert not torch.equal(next(plain.parameters()), next(_net().parameters()))  # they did move


def test_optimizer_is_fused_and_equals_the_loop():
    """The fused SGD kernel (the default) gives the per-parameter loop's weights bit for bit,
    given the same gradients (set by hand: two backward passes may round sums differently)."""
    a, b = _net(), _net()
    fused = build_optimizer(a.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    assert fused.param_groups[0]["fused"] is True
    loop = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3, foreach=False)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for pa, pb in zip(a.parameters(), b.parameters()):
            grad = torch.randn(pa.shape, generator=g)
            pa.grad, pb.grad = grad.clone(), grad.clone()
        fused.step()
        loop.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(next(a.parameters()), next(_net().parameters()))


def test_in_backward_update_is_the_optimizers_own():
    """Given the same gradient, the hook's update is the optimizer's step bit for bit."""
    a, b = _net(), _net()
    opt_a = build_optimizer(a.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt_b = build_optimizer(b.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    in_bw = SGDInBackward(opt_b)
    in_bw.armed = True
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        for pa, pb in zip(a.parameters(), b.parameters()):
            grad = torch.randn(pa.shape, generator=g)
            pa.grad, pb.grad = grad.clone(), grad.clone()
            in_bw._update(pb)  # what the post-accumulate hook runs
            assert pb.grad is None
        opt_a.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name


def test_in_backward_follows_lr_after_load_state_dict():
    net = _net()
    opt = build_optimizer(net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.0)
    in_bw = SGDInBackward(opt)
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # replaces the group dicts
    opt.param_groups[0]["lr"] = 0.0
    before = [p.detach().clone() for p in net.parameters()]
    in_bw.backward_and_step(_loss(net, torch.randn(2, 3, 6, 6)))
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # lr 0: no move


def test_unarmed_backward_keeps_gradients():
    net = _net()
    SGDInBackward(build_optimizer(net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.0))
    before = [p.detach().clone() for p in net.parameters()]
    _loss(net, torch.randn(2, 3, 6, 6)).backward()
    assert all(p.grad is not None for p in net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_resolve_in_backward():
    assert resolve_in_backward("auto", distributed=False, fp16=False, compile=False) is True
    for kw in ({"distributed": True}, {"fp16": True}, {"compile": True}):
        args = {"distributed": False, "fp16": False, "compile": False, **kw}
        assert resolve_in_backward("auto", **args) is False
        assert resolve_in_backward(False, **args) is False
    with pytest.raises(ConfigError, match="DDP"):
        resolve_in_backward(True, distributed=True, fp16=False, compile=False)
    with pytest.raises(ConfigError, match="fp16"):
        resolve_in_backward(True, distributed=False, fp16=True, compile=False)
