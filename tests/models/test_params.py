"""Parameter counts of the paper configuration equal docs/METHOD.md, module by module."""
from __future__ import annotations

import pytest
import torch

import decseg
from decseg.models import build_generators, build_model, count_parameters, parameter_breakdown

PAPER = ["model.encoder=res2net50d", "model.pretrained=false"]


def meta_model(*extra: str):
    # Counting needs no memory: build on the meta device.
    with torch.device("meta"):
        return build_model(decseg.load_config(None, PAPER + list(extra)))


def test_paper_configuration_counts_match_design_module_by_module():
    net = meta_model()
    counts = parameter_breakdown(net, build_generators(decseg.load_config(None, PAPER)))
    assert counts["cfa_levels"] == {"cfa1": 86_704, "cfa2": 101_040, "cfa3": 125_616, "cfa4": 174_768}
    assert counts["decoder_full"] == counts["decoder_half"] == 37_001_410
    assert counts["fusion_levels"] == {
        "dcf5": 151_019_524, "dcf4": 37_761_028, "dcf3": 9_443_332, "dcf2": 2_362_372, "dcf1": 148_228,
        "bottleneck": 75_505_664,
        "up4": 36_705_280, "up3": 9_177_600, "up2": 2_295_040, "up1": 176_448,
        "head": 1_154,
    }
    assert counts["encoder"] == 23_669_352  # Res2Net-50 v1b 26w4s without fc
    assert counts["total"] == count_parameters(net) == 422_755_970
    assert counts["generator_each"] == [1_748_483, 1_748_483]


@pytest.mark.parametrize("extra,total", [
    (["model.cfa=false"], 444_976_066),
    (["model.sc=false", "model.dcf=false"], 61_158_890),
])
def test_ablation_totals_match_design(extra, total):
    assert count_parameters(meta_model(*extra)) == total


def test_cfa_off_decoder_is_a_plain_unet_with_wider_inputs():
    net = meta_model("model.cfa=false")
    assert net.cfa is None
    # DoubleConv input = raw skip f4 (1024) + upsampled (1024).
    assert net.decoder_full.up4.conv[0][0].in_channels == 2048
    assert net.decoder_full.up1.conv[0][0].in_channels == 128


def test_paper_model_real_forward_shapes_at_64px():
    torch.manual_seed(0)
    cfg = decseg.load_config(None, PAPER + ["data.size=64"])
    net = build_model(cfg).eval()
    assert net.encoder.channels == [64, 256, 512, 1024, 2048]
    with torch.inference_mode():
        o1, o2, o3 = net(torch.rand(1, 3, 64, 64))
    assert (o1.shape, o2.shape, o3.shape) == ((1, 2, 64, 64), (1, 2, 32, 32), (1, 2, 64, 64))
    assert torch.isfinite(o3).all()
