"""Learning-rate schedule: the released code's poly decay ``lr = base * (1 - it / max_it) ** power``."""
from __future__ import annotations

import torch


def poly_lr(base_lr: float, iteration: int, max_iterations: int, power: float = 0.9) -> float:
    """The learning rate for the step that starts after ``iteration`` completed steps."""
    frac = min(max(iteration, 0), max_iterations) / max_iterations
    return base_lr * (1.0 - frac) ** power


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
