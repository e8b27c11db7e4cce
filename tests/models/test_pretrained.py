"""model.pretrained: local files in official Res2Net / timm key format, errors, the warning."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import timm
import torch

import decseg
from decseg.errors import PretrainedWeightsError
from decseg.models import build_encoder, build_model

OFFICIAL_NAME = "res2net50_v1b_26w_4s-3cf99910.pth"


def cfg_for(encoder: str, pretrained, *extra: str):
    return decseg.load_config(None, [f"model.encoder={encoder}", f"model.pretrained={pretrained}",
                                     "data.size=64", *extra])


def test_official_res2net_file_gives_the_classifier_features(tmp_path):
    torch.manual_seed(0)
    classifier = timm.create_model("res2net50d", pretrained=False).eval()
    # The official checkpoint's keys (conv1.0.weight, layer1.0.convs.0.weight, ..., fc.weight)
    # are those of timm's res2net50d classifier.
    state = classifier.state_dict()
    assert "conv1.0.weight" in state and "layer1.0.convs.0.weight" in state and "fc.weight" in state
    path = tmp_path / OFFICIAL_NAME
    torch.save(state, path)
    net = build_model(cfg_for("res2net50d", path, "model.sc=false", "model.dcf=false")).eval()

    captured = {}
    hooks = [getattr(classifier, n).register_forward_hook(lambda m, i, o, n=n: captured.__setitem__(n, o))
             for n in ("act1", "layer1", "layer2", "layer3", "layer4")]
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        final = classifier.forward_features(x)
        feats = net.encoder(x)
    for h in hooks:
        h.remove()
    # f1 = deep-stem output after its ReLU, before max-pool (64 ch, stride 2).
    assert feats[0].shape == (2, 64, 32, 32)
    for f, name in zip(feats, ("act1", "layer1", "layer2", "layer3", "layer4")):
        torch.testing.assert_close(f, captured[name], rtol=0, atol=0)
    torch.testing.assert_close(feats[4], final, rtol=0, atol=0)


def test_wrapped_state_dict_with_module_prefix_loads(tmp_path):
    torch.manual_seed(1)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    # DDP prefixes, a {'state_dict': ...} wrapper, and no num_batches_tracked (old PyTorch files).
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()
                                          if not k.endswith("num_batches_tracked")}}
    path = tmp_path / "resnet18_wrapped.pth"
    torch.save(wrapped, path)
    enc = build_encoder(cfg_for("resnet18", path))
    torch.testing.assert_close(enc.backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    torch.testing.assert_close(enc.backbone.bn1.running_var, state["bn1.running_var"])


def test_mismatching_checkpoint_lists_the_offending_keys(tmp_path):
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)  # wrong shape
    state["extra.block.weight"] = torch.zeros(3)  # unexpected
    del state["layer2.0.bn1.weight"]  # missing
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(PretrainedWeightsError) as info:
        build_encoder(cfg_for("resnet18", path))
    msg = str(info.value)
    assert "bad.pth" in msg
    assert "missing keys: layer2.0.bn1.weight" in msg
    assert "unexpected keys: extra.block.weight" in msg
    assert "layer1.0.conv1.weight (64, 64, 1, 1) vs (64, 64, 3, 3)" in msg


def test_checkpoint_of_another_architecture_is_rejected(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="does not fit encoder 'test_efficientnet'"):
        build_encoder(cfg_for("test_efficientnet", path))


def test_unreadable_or_absent_files_are_clear_errors(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="nor an existing file"):
        build_encoder(cfg_for("test_efficientnet", tmp_path / "absent.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="cannot be read as a PyTorch weights file"):
        build_encoder(cfg_for("test_efficientnet", junk))
    tensor_only = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(PretrainedWeightsError, match="no state dict of tensors"):
        build_encoder(cfg_for("test_efficientnet", tensor_only))


def test_random_init_warns_that_results_will_be_low(caplog):
    with caplog.at_level(logging.WARNING):
        build_encoder(cfg_for("test_efficientnet", "false"))
    assert "far below the paper" in caplog.text


def test_pretrained_true_offline_says_how_to_proceed(tmp_path):
    # A fresh, empty cache with the hub forced offline: the weights cannot be had.
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf"), TORCH_HOME=str(tmp_path / "torch"))
    proc = subprocess.run(
        [sys.executable, "-m", "decseg", "summary", "--set", "model.encoder=test_efficientnet",
         "--set", "data.size=64", "--set", "model.pretrained=true"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "model.pretrained=false" in proc.stderr
    assert "model.pretrained=/path/to/file.pth" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_load_pretrained_false_neither_fetches_nor_warns(caplog):
    # For callers that load a whole checkpoint next: model.pretrained=true must not touch the hub.
    with caplog.at_level(logging.WARNING):
        net = build_model(cfg_for("test_efficientnet", "true"), load_pretrained=False)
    assert "far below the paper" not in caplog.text
    assert net.encoder.channels == [16, 24, 32, 48, 64]
