"""Losses against values computed by hand (docs/METHOD.md, "Objective")."""
from __future__ import annotations

import math

import pytest
import torch

from decseg.losses import (
    ce_dice_loss, cross_generative_consistency_loss, decseg_loss, mse, perturbation_consistency_loss,
    scale_consistency_loss, sigmoid_rampup, soft_dice_loss, supervised_loss, upsample_to,
)


def test_soft_dice_is_batchwise_and_class_averaged():
    # two samples of 1x2 pixels, K=2; probabilities given directly
    probs = torch.tensor([[[[0.8, 0.4]], [[0.2, 0.6]]],
                          [[[0.5, 1.0]], [[0.5, 0.0]]]])  # (N=2, K=2, 1, 2)
    target = torch.tensor([[[0, 1]], [[1, 0]]])  # (2, 1, 2)
    # class 0: s = .8,.4,.5,1.0  t = 1,0,0,1 -> sum(st)=1.8, sum s^2=.64+.16+.25+1=2.05, sum t^2=2
    d0 = 1 - (2 * 1.8 + 1e-5) / (2.05 + 2 + 1e-5)
    # class 1: s = .2,.6,.5,0  t = 0,1,1,0 -> sum(st)=1.1, sum s^2=.04+.36+.25=.65, sum t^2=2
    d1 = 1 - (2 * 1.1 + 1e-5) / (0.65 + 2 + 1e-5)
    assert soft_dice_loss(probs, target).item() == pytest.approx((d0 + d1) / 2, abs=1e-7)
    # batch-wise, not the mean of per-sample Dice
    per_sample = (soft_dice_loss(probs[:1], target[:1]) + soft_dice_loss(probs[1:], target[1:])) / 2
    assert abs(per_sample.item() - (d0 + d1) / 2) > 5e-4


def test_ce_dice_is_half_the_sum_and_in_fp32():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    p = torch.softmax(logits, 1)
    ce = -(math.log(p[0, 0, 0, 0]) + math.log(p[0, 1, 0, 1])) / 2
    dice = soft_dice_loss(p, target).item()
    got = ce_dice_loss(logits.to(torch.bfloat16), target)
    assert got.dtype == torch.float32
    assert ce_dice_loss(logits, target).item() == pytest.approx(0.5 * (ce + dice), rel=1e-6)


def test_supervised_loss_sums_available_outputs():
    torch.manual_seed(0)
    o = torch.randn(2, 2, 8, 8)
    oh = torch.randn(2, 2, 4, 4)
    y = torch.randint(0, 2, (2, 8, 8))
    yh = torch.randint(0, 2, (2, 4, 4))
    full = supervised_loss([o, oh, o * 2], [y, yh, y])
    expect = ce_dice_loss(o, y) + ce_dice_loss(oh, yh) + ce_dice_loss(o * 2, y)
    assert full.item() == pytest.approx(expect.item(), rel=1e-6)
    only_first = supervised_loss([o, None, None], [y, yh, y])
    assert only_first.item() == pytest.approx(ce_dice_loss(o, y).item(), rel=1e-6)


def test_upsample_is_bilinear_align_corners_and_scale_consistency():
    half = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    up = upsample_to(half, (3, 3))
    assert torch.allclose(up[0, 0, 0], torch.tensor([0.0, 0.5, 1.0]))
    full = torch.zeros(1, 1, 3, 3)
    # MSE(0, [0, .5, 1] in every row) = (0 + .25 + 1) / 3
    assert scale_consistency_loss([(full, half)]).item() == pytest.approx(1.25 / 3, rel=1e-6)
    # L_sc sums its pairs: labeled, unlabeled, perturbed
    assert scale_consistency_loss([(full, half)] * 3).item() == pytest.approx(1.25, rel=1e-6)


def test_spc_cc_and_the_total():
    ones, zeros = torch.ones(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
    # L_spc: one MSE per output that exists
    assert perturbation_consistency_loss([ones, ones * 0.5], [zeros, zeros]).item() == pytest.approx(1.25)
    # L_cc: G1's reconstruction against the jittered image, G2's against the clean one
    assert cross_generative_consistency_loss(ones, zeros, ones * 2, ones).item() == pytest.approx(2.0)
    sup, sc, spc, cc = (torch.tensor(v) for v in (1.0, 0.1, 0.2, 0.3))
    assert decseg_loss(sup, sc, spc, cc, lam=0.5).item() == pytest.approx(1.3)
    assert mse(torch.ones(2, 3), torch.zeros(2, 3)).item() == 1.0


def test_sigmoid_rampup():
    assert sigmoid_rampup(0, 0) == 1.0  # 0 = constant lambda (released code)
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(100, 100) == 1.0
    assert sigmoid_rampup(500, 100) == 1.0
