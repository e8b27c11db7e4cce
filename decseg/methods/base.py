"""The method interface: a method turns one training batch into a dict of its own loss terms.

A method is an ``nn.Module`` that owns every trainable module it needs (the segmentation
network ``net`` and, for DEC-Seg, the reconstruction generators), so that the trainer can wrap
one module for DDP, build one optimizer over ``method.parameters()``, and call it once per step:

    losses, visuals = method(labeled, unlabeled_or_None, iteration, with_visuals=False)
    losses["loss"].backward(); optimizer.step(); method.after_step(iteration)

``losses`` holds ``loss`` (the total that is optimised) and the method's ``terms`` (detached,
for the log). ``visuals`` is empty unless asked for: then it maps names to the first sample of
each map the method wants to show. The trainer knows nothing else about a method.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from decseg.config import Config
from decseg.errors import ConfigError


class Method(nn.Module):
    """Base class. Subclasses set ``terms`` and implement ``compute_losses``."""

    #: the loss terms this method reports besides ``loss``, in log order
    terms: tuple[str, ...] = ()

    def __init__(self, cfg: Config, net: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.net = net

    # -- what the trainer asks -------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Raise ConfigError for batch settings this method cannot train with."""
        t = cfg.train
        if cls.uses_unlabeled(cfg) and t.batch_unlabeled < 1:
            raise ConfigError(
                f"train.semi=true needs train.batch_unlabeled >= 1 (got {t.batch_unlabeled}); "
                f"set train.batch_unlabeled or train.semi=false"
            )
        unlabeled_pass = cls.unlabeled_only_pass(cfg)
        if unlabeled_pass and t.batch_unlabeled < 2:
            raise ConfigError(
                f"train.batch_unlabeled={t.batch_unlabeled}: {unlabeled_pass} sees only the unlabeled "
                f"part, and BatchNorm needs at least 2 samples. Use train.batch_unlabeled>=2"
            )
        n = cls.forward_batch_size(cfg)
        if n < 2:
            raise ConfigError(
                f"a training forward pass would see {n} sample (train.batch_labeled="
                f"{t.batch_labeled}, train.batch_unlabeled={t.batch_unlabeled}, train.semi={t.semi}); "
                f"BatchNorm needs at least 2 samples per pass. Raise the batch size"
            )

    @classmethod
    def unlabeled_only_pass(cls, cfg: Config) -> str | None:
        """The name of a forward pass that sees only the unlabeled part, if the method has one."""
        return None

    @classmethod
    def uses_unlabeled(cls, cfg: Config) -> bool:
        """Whether the loader must yield unlabeled batches."""
        return bool(cfg.train.semi)

    @classmethod
    def forward_batch_size(cls, cfg: Config) -> int:
        t = cfg.train
        return t.batch_labeled + (t.batch_unlabeled if cls.uses_unlabeled(cfg) else 0)

    def forward(self, labeled: dict, unlabeled: dict | None, iteration: int, *,
                with_visuals: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        losses, maps = self.compute_losses(labeled, unlabeled, iteration)
        visuals = ({k: v[:1].detach().float().cpu() for k, v in maps.items() if v is not None}
                   if with_visuals else {})
        return losses, visuals

    def compute_losses(self, labeled: dict, unlabeled: dict | None, iteration: int
                       ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor | None]]:
        """``(losses, maps)``: ``losses`` has ``loss`` and every name in ``terms``; ``maps`` the
        tensors worth showing (images, logits, reconstructions; None where switched off)."""
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
