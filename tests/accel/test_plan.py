"""The execution plan resolves every auto lever as documented."""
from __future__ import annotations

import pytest
import torch

from decseg import load_config
from decseg.accel.plan import (
    BIG_MODEL_PARAMS, plan_execution, resolve_cpu_memory, use_channels_last, use_gemm_conv,
)
from decseg.errors import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_channels_last_auto():
    assert use_channels_last("auto", CPU, torch.bfloat16) is True
    assert use_channels_last("auto", CPU, None) is False  # fp32 NHWC is slower with oneDNN
    assert use_channels_last("auto", CUDA, None) is True
    assert use_channels_last(True, CPU, None) is True and use_channels_last(False, CUDA, None) is False


def test_gemm_conv_auto():
    assert use_gemm_conv("auto", CPU, False) and not use_gemm_conv("auto", CUDA, False)
    assert not use_gemm_conv("auto", CPU, True)  # not under compile
    assert use_gemm_conv("gemm", CUDA, False)
    assert not use_gemm_conv("native", CPU, False)


def test_plan_resolves_once_from_the_train_settings():
    plan = plan_execution(load_config(None, ["train.amp=off"]).train, CPU)
    assert (plan.dtype, plan.channels_last, plan.gemm_weight_grad, plan.optimizer_in_backward) == (
        None, False, True, True)
    plan = plan_execution(load_config(None, ["train.checkpointing=true"]).train, CPU, distributed=True)
    assert plan.dtype is torch.bfloat16 and plan.channels_last
    assert plan.optimizer_in_backward is False  # DDP all-reduces after backward
    assert plan.activation_checkpointing is True
    with pytest.raises(ConfigError, match="fp16 is unsupported on CPU"):
        plan_execution(load_config(None, ["train.amp=fp16"]).train, CPU)


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
