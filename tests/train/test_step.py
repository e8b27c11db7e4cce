"""build_training applies the execution plan to the network, method and optimizer."""
from __future__ import annotations

import torch

from decseg import load_config
from decseg.train.step import build_training

CPU = torch.device("cpu")


def test_build_training_resolves_settings():
    cfg = load_config(None, ["model.encoder=resnet18", "model.pretrained=false", "data.size=64",
                             "train.amp=off"])
    parts = build_training(cfg, CPU)
    s = parts.settings()
    assert s == {"amp_dtype": "fp32", "channels_last_resolved": False,
                 "optimizer_in_backward_resolved": True, "gemm_weight_grad_resolved": True,
                 "gemm_weight_grad_convs": 0, "cpu_memory_resolved": "reuse",
                 "activation_checkpointing": False}
    assert all(p.is_contiguous() for p in parts.method.parameters())
    cfg = load_config(None, ["model.encoder=resnet18", "model.pretrained=false", "data.size=64",
                             "train.optimizer_in_backward=false"])
    parts = build_training(cfg, CPU)
    assert parts.settings()["channels_last_resolved"] is True
    assert parts.plan.optimizer_in_backward is False
    convs = [p for p in parts.method.parameters() if p.dim() == 4 and p.shape[2] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
