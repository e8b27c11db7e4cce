"""The method interface: a method turns one training batch into a dict of losses.

A method is an ``nn.Module`` that owns every trainable module it needs (the segmentation
network ``net`` and, for DEC-Seg, the reconstruction generators), so that the trainer can wrap
one module for DDP, build one optimizer over ``method.parameters()``, and call it once per step:

    losses = method(labeled, unlabeled_or_None, iteration)   # {"loss": tensor, "sup": ..., ...}
    losses["loss"].backward(); optimizer.step(); method.after_step(iteration)

The trainer knows nothing else about a method. Every method reports the standard keys
``loss, sup, sc, spc, cc`` (components it does not use are exactly 0) plus its own extras.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from decseg.config import Config
from decseg.errors import ConfigError

STANDARD_KEYS = ("loss", "sup", "sc", "spc", "cc")


class Method(nn.Module):
    """Base class. Subclasses set ``name`` and implement ``compute_losses``."""

    name = "base"

    def __init__(self, cfg: Config, net: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.net = net
        self.capture_visuals = False  # the trainer sets it on image-logging steps
        self.visuals: dict[str, torch.Tensor] = {}

    # -- what the trainer asks -------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Raise ConfigError for settings this method cannot train with."""
        t = cfg.train
        if t.batch_labeled < 1:
            raise ConfigError(f"train.batch_labeled={t.batch_labeled} must be >= 1")
        if cls.uses_unlabeled(cfg) and t.batch_unlabeled < 1:
            raise ConfigError(
                f"train.semi=true needs train.batch_unlabeled >= 1 (got {t.batch_unlabeled}); "
                f"set train.batch_unlabeled or train.semi=false"
            )
        n = cls.forward_batch_size(cfg)
        if n < 2:
            raise ConfigError(
                f"a training forward pass would see {n} sample (train.batch_labeled="
                f"{t.batch_labeled}, train.batch_unlabeled={t.batch_unlabeled}, train.semi={t.semi}); "
                f"BatchNorm needs at least 2 samples per pass. Raise the batch size"
            )

    @classmethod
    def uses_unlabeled(cls, cfg: Config) -> bool:
        """Whether the loader must yield unlabeled batches."""
        return bool(cfg.train.semi)

    @classmethod
    def forward_batch_size(cls, cfg: Config) -> int:
        t = cfg.train
        return t.batch_labeled + (t.batch_unlabeled if cls.uses_unlabeled(cfg) else 0)

    def forward(self, labeled: dict, unlabeled: dict | None, iteration: int) -> dict[str, torch.Tensor]:
        losses = self.compute_losses(labeled, unlabeled, iteration)
        zero = losses["loss"].new_zeros(())
        for key in STANDARD_KEYS:
            losses.setdefault(key, zero)
        return losses

    def compute_losses(self, labeled: dict, unlabeled: dict | None, iteration: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def after_step(self, iteration: int) -> None:
        """Called after each optimizer update (e.g. the EMA teacher update)."""

    def on_device(self, device: torch.device, memory_format: torch.memory_format = torch.preserve_format) -> None:
        """Called after ``.to(device)``: move state that is not a registered submodule."""

    def extra_state(self) -> dict[str, Any]:
        """Resume state beyond the registered parameters and buffers (e.g. the EMA teacher)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def lambda_weight(self, iteration: int) -> float:
        """lambda = train.consistency, times a sigmoid ramp-up when train.rampup > 0."""
        from decseg.losses import sigmoid_rampup

        return self.cfg.train.consistency * sigmoid_rampup(iteration, self.cfg.train.rampup)

    def _capture(self, **tensors: torch.Tensor | None) -> None:
        """Keep the first sample of each map for TensorBoard (only on image-logging steps)."""
        if self.capture_visuals:
            self.visuals = {k: v[:1].detach().float().cpu() for k, v in tensors.items() if v is not None}
