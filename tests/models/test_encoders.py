"""Encoders beyond timm's five-level CNNs: hierarchical transformers (four levels at strides
4..32 plus the learned stride-2 stem) and plain ViTs / DINOv2 (simple feature pyramid plus the
stem), at 64 px with random init; local weights in timm and official key formats."""
from __future__ import annotations

import re

import pytest
import timm
import torch

import decseg
from decseg.errors import ConfigError, PretrainedWeightsError
from decseg.models import build_encoder, build_model, count_parameters, parameter_breakdown
from decseg.models.encoders import HierarchicalEncoder, ViTEncoder

STEM = 19_488  # Conv3x3 s2 3->32 + BN + Conv3x3 32->64 + BN

# name: (encoder class, widths f1..f5, backbone parameters, network parameters), all at 64 px.
FAMILIES = {
    "pvt_v2_b0": (HierarchicalEncoder, [64, 32, 64, 160, 256], 3_409_760, 11_795_866),
    "convnext_atto": (HierarchicalEncoder, [64, 40, 80, 160, 320], 3_373_880, 14_242_234),
    "swin_tiny_patch4_window7_224": (HierarchicalEncoder, [64, 96, 192, 384, 768], 27_501_498, 84_914_644),
    "vit_tiny_patch16_224": (ViTEncoder, [64, 48, 96, 192, 192], 5_489_856, 14_431_258),
    "vit_small_patch14_dinov2": (ViTEncoder, [64, 96, 192, 384, 384], 21_536_640, 53_938_426),
}
PYRAMID = {"vit_tiny_patch16_224": 166_320, "vit_small_patch14_dinov2": 664_416}


def cfg_for(name: str, *extra: str):
    return decseg.load_config(None, [f"model.encoder={name}", "model.pretrained=false", "data.size=64", *extra])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_builds_runs_backward_and_reports_its_levels(name):
    kind, widths, backbone_params, total = FAMILIES[name]
    torch.manual_seed(0)
    net = build_model(cfg_for(name))
    enc = net.encoder
    assert isinstance(enc, kind)
    assert enc.channels == widths and enc.reductions == [2, 4, 8, 16, 32]
    x = torch.rand(2, 3, 64, 64)
    feats = enc(x)
    assert [tuple(f.shape) for f in feats] == [(2, c, 64 // r, 64 // r) for c, r in zip(widths, enc.reductions)]
    # Full network, both scales: forward, backward, a finite gradient for every parameter.
    o1, o2, o3 = net(x)
    assert (o1.shape, o2.shape, o3.shape) == ((2, 2, 64, 64), (2, 2, 32, 32), (2, 2, 64, 64))
    sum(o.pow(2).mean() for o in (o1, o2, o3)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert enc.stem[0].weight.grad.abs().sum() > 0
    # Pinned counts; the summary's encoder rows add up.
    counts = parameter_breakdown(net)
    expected_levels = {"backbone": backbone_params, "stem": STEM}
    if name in PYRAMID:
        expected_levels["pyramid"] = PYRAMID[name]
    assert counts["encoder_levels"] == expected_levels
    assert counts["encoder"] == sum(expected_levels.values())
    assert count_parameters(net) == total
    # channels_last weights and inputs give the same outputs.
    net.eval()
    with torch.no_grad():
        ref = net.predict_logits(x)
        net.to(memory_format=torch.channels_last)
        got = net.predict_logits(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_patch14_vit_sees_a_grid_of_size_over_16_at_both_scales():
    # 96 px: the ViT sees 84 px (6 x 6 patches of 14) and the half scale 64 -> 56 px (4 x 4).
    net = build_model(cfg_for("vit_small_patch14_dinov2", "data.size=96")).eval()
    assert net.encoder.backbone.patch_embed.img_size == (84, 84)
    with torch.no_grad():
        full = net.encoder(torch.rand(1, 3, 96, 96))
        half = net.encoder(torch.rand(1, 3, 64, 64))
    assert [f.shape[-1] for f in full] == [48, 24, 12, 6, 3]
    assert [f.shape[-1] for f in half] == [32, 16, 8, 4, 2]
    # The half scale's position embedding (6 x 6 -> 4 x 4 by matrices, for ONNX) equals timm's resample.
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ours = net.encoder(x)
        del net.encoder.backbone._pos_embed  # timm's own method again
        timms = net.encoder(x)
    for a, b in zip(ours, timms):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_in_channels_adapter_comes_before_the_stem_and_backbone():
    net = build_model(cfg_for("pvt_v2_b0", "data.channels=1"))
    assert net.encoder.adapter.weight.shape == (3, 1, 3, 3)
    assert parameter_breakdown(net)["encoder_levels"]["adapter"] == 27
    assert net.encoder(torch.rand(2, 1, 64, 64))[0].shape == (2, 64, 32, 32)


def _official_pvt_v2_keys(state: dict) -> dict:
    """timm's pvt_v2 keys written back in the release's naming (github.com/whai362/PVT)."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"^stages\.0\.downsample", "patch_embed1", k)
        k = k.replace("patch_embed.", "patch_embed1.", 1) if k.startswith("patch_embed.") else k
        k = re.sub(r"^stages\.(\d)\.downsample", lambda m: f"patch_embed{int(m.group(1)) + 1}", k)
        k = re.sub(r"^stages\.(\d)\.blocks\.(\d+)", lambda m: f"block{int(m.group(1)) + 1}.{m.group(2)}", k)
        k = re.sub(r"^stages\.(\d)\.norm", lambda m: f"norm{int(m.group(1)) + 1}", k)
        out[k.replace(".dwconv.", ".dwconv.dwconv.")] = v
    return out


def test_official_pvt_v2_release_file_loads_through_timms_converter(tmp_path):
    torch.manual_seed(2)
    classifier = timm.create_model("pvt_v2_b0", pretrained=False)
    state = classifier.state_dict()
    official = _official_pvt_v2_keys(state)
    assert "block1.0.mlp.dwconv.dwconv.weight" in official and "patch_embed2.proj.weight" in official
    path = tmp_path / "pvt_v2_b0.pth"
    torch.save(official, path)
    enc = build_encoder(decseg.load_config(None, ["model.encoder=pvt_v2_b0", f"model.pretrained={path}",
                                                  "data.size=64"]))
    got = enc.backbone.state_dict()
    for k in ("patch_embed.proj.weight", "stages.1.downsample.proj.weight", "stages.3.blocks.1.mlp.dwconv.weight",
              "stages.2.norm.weight"):
        torch.testing.assert_close(got[k], state[k], rtol=0, atol=0)
    with torch.no_grad():  # the stages are the classifier's
        ref = classifier.eval().forward_intermediates(torch.rand(1, 3, 64, 64), intermediates_only=True)
    assert len(ref) == 4


def test_timm_dinov2_state_dict_at_518_px_is_resampled_to_the_grid(tmp_path):
    torch.manual_seed(3)
    state = timm.create_model("vit_small_patch14_dinov2", pretrained=False).state_dict()
    assert state["pos_embed"].shape == (1, 37 * 37 + 1, 384)
    state["mask_token"] = torch.zeros(1, 384)  # the official release file carries it; timm drops it
    path = tmp_path / "dinov2_vits14.pth"
    torch.save({"model": state}, path)
    enc = build_encoder(decseg.load_config(None, ["model.encoder=vit_small_patch14_dinov2",
                                                  f"model.pretrained={path}", "data.size=64"]))
    assert enc.backbone.pos_embed.shape == (1, 4 * 4 + 1, 384)
    torch.testing.assert_close(enc.backbone.blocks[11].mlp.fc2.weight, state["blocks.11.mlp.fc2.weight"])


def test_file_of_another_family_is_rejected_with_its_keys(tmp_path):
    path = tmp_path / "pvt.pth"
    torch.save(timm.create_model("pvt_v2_b0", pretrained=False).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="does not fit encoder 'convnext_atto'.*missing keys"):
        build_encoder(decseg.load_config(None, ["model.encoder=convnext_atto", f"model.pretrained={path}",
                                                "data.size=64"]))


@pytest.mark.parametrize("name,pattern", [
    ("mit_b0", "timm has no MiT"),
    ("efficientvit_m0", r"feature strides are \[16, 32, 64\]"),
    ("hiera_tiny_224", "does not run at 32 px"),  # bound to its build size: no half scale
])
def test_refused_encoders_say_why(name, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build_model(cfg_for(name))


def test_pretrained_true_offline_for_a_transformer_says_how_to_proceed(tmp_path, subprocess_env):
    import subprocess
    import sys
    env = dict(subprocess_env, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), TORCH_HOME=str(tmp_path / "t"))
    proc = subprocess.run([sys.executable, "-m", "decseg", "summary", "--set", "model.encoder=pvt_v2_b0",
                           "--set", "data.size=64", "--set", "model.pretrained=true"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "model.pretrained=false" in proc.stderr and "pvt_v2_b0" in proc.stderr
    assert "Traceback" not in proc.stderr
