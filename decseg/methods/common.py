"""Small pieces the semi-supervised baselines share: the prediction output, pseudo-labels,
slices of the outputs, and the train.semi rule."""
from __future__ import annotations

import torch

from decseg.config import Config
from decseg.errors import ConfigError


def prediction(outputs: tuple) -> torch.Tensor:
    """The prediction output of ``(o1, o2, o3)``: o3, or o1 when DCF is off."""
    return outputs[2] if outputs[2] is not None else outputs[0]


@torch.no_grad()
def pseudo_labels(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(confidence, label)`` per pixel: the max softmax probability and the argmax (detached)."""
    conf, label = torch.softmax(logits.detach().float(), 1).max(1)
    return conf, label


def heads(outputs: tuple, n: int, start: int = 0) -> list:
    """Samples ``start:start + n`` of every output that exists (None stays None)."""
    return [o[start:start + n] if o is not None else None for o in outputs]


def require_semi(cfg: Config, method: str) -> None:
    """The semi-supervised methods learn from unlabeled images, so they need train.semi=true."""
    if not cfg.train.semi:
        raise ConfigError(f"train.method={method} needs train.semi=true (it learns from unlabeled images); "
                          f"use train.method=supervised for a labeled-only baseline")
