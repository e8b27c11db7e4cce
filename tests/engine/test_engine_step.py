"""Execution settings resolve as documented, and build_training applies them."""
from __future__ import annotations

import pytest
import torch

from decseg import load_config
from decseg.train.step import (
    BIG_MODEL_PARAMS, build_training, resolve_cpu_memory, use_channels_last, use_gemm_conv,
)
from decseg.errors import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_channels_last_auto():
    assert use_channels_last("auto", CPU, torch.bfloat16) is True
    assert use_channels_last("auto", CPU, None) is False  # fp32 NHWC is slower with oneDNN
    assert use_channels_last("auto", CUDA, None) is True
    assert use_channels_last(True, CPU, None) is True and use_channels_last(False, CUDA, None) is False


def test_gemm_conv_auto():
    cfg = load_config(None, [])
    assert use_gemm_conv(cfg, CPU) and not use_gemm_conv(cfg, CUDA)
    assert not use_gemm_conv(load_config(None, ["train.compile=true"]), CPU)
    assert use_gemm_conv(load_config(None, ["train.conv_weight_grad=gemm"]), CUDA)
    assert not use_gemm_conv(load_config(None, ["train.conv_weight_grad=native"]), CPU)


def test_cpu_memory_auto():
    bf16 = torch.bfloat16
    assert resolve_cpu_memory("auto", CPU, BIG_MODEL_PARAMS + 1, bf16) == "cache"  # memory target
    assert resolve_cpu_memory("auto", CPU, BIG_MODEL_PARAMS + 1, bf16,
                              cache_available=False) == "return"  # no compiler: glibc's bound
    assert resolve_cpu_memory("auto", CPU, 12_000_000, bf16, cache_available=False) == "reuse"
    assert resolve_cpu_memory("auto", CPU, 12_000_000, bf16) == "reuse"
    assert resolve_cpu_memory("auto", CPU, BIG_MODEL_PARAMS + 1, None) == "reuse"  # fp32: faults cost
    assert resolve_cpu_memory("reuse", CUDA, BIG_MODEL_PARAMS + 1, bf16) == "system"  # CUDA allocator's job
    assert resolve_cpu_memory("system", CPU, 10, None) == "system"
    assert resolve_cpu_memory("return", CPU, 10, None) == "return"


def test_cpu_memory_choices_and_the_replaced_key():
    with pytest.raises(ConfigError, match="train.cpu_memory"):
        load_config(None, ["train.cpu_memory=hoard"])
    with pytest.raises(ConfigError, match="replaced: use train.cpu_memory"):
        load_config(None, ["train.return_freed_memory=true"])


@pytest.mark.parametrize("key", ["channels_last", "optimizer_in_backward"])
def test_tristate_keys_refuse_other_strings(key):
    with pytest.raises(ConfigError, match=f"train.{key}"):
        load_config(None, [f"train.{key}=sometimes"])
    with pytest.raises(ConfigError, match="conv_weight_grad"):
        load_config(None, ["train.conv_weight_grad=fast"])


def test_build_training_resolves_settings():
    cfg = load_config(None, ["model.encoder=resnet18", "model.pretrained=false", "data.size=64",
                             "train.amp=off"])
    parts = build_training(cfg, CPU)
    s = parts.settings()
    assert s == {"amp_dtype": "fp32", "channels_last_resolved": False,
                 "optimizer_in_backward_resolved": True, "gemm_weight_grad_convs": 0,
                 "cpu_memory_resolved": "reuse"}
    assert all(p.is_contiguous() for p in parts.method.parameters())
    cfg = load_config(None, ["model.encoder=resnet18", "model.pretrained=false", "data.size=64",
                             "train.optimizer_in_backward=false"])
    parts = build_training(cfg, CPU)
    assert parts.settings()["channels_last_resolved"] is True
    assert parts.optimizer_in_backward is False
    convs = [p for p in parts.method.parameters() if p.dim() == 4 and p.shape[2] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
