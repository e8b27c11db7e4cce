"""Exponential moving average of a model's weights (the mean-teacher's teacher)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """``teacher = d * teacher + (1 - d) * student`` with ``d = min(1 - 1/(step + 1), decay)``.

    The warm-up ``1 - 1/(step + 1)`` lets the teacher follow the student closely in the first
    steps (as in Tarvainen & Valpola's reference code). Buffers (BN statistics) are copied.
    The teacher is a plain attribute, never a registered submodule, so DDP and the optimizer
    ignore it.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = float(decay)
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> None:
        d = min(1.0 - 1.0 / (step + 1), self.decay)
        for t, s in zip(self.model.parameters(), student.parameters()):
            t.mul_(d).add_(s.detach(), alpha=1.0 - d)
        for t, s in zip(self.model.buffers(), student.buffers()):
            t.copy_(s)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.model.load_state_dict(state["model"])
