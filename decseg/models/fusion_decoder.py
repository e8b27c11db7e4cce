"""The fusion decoder: DCF (dcf.py) on the five level pairs, then a U-Net decoder (docs/METHOD.md, "Network")."""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from decseg.models.blocks import DoubleConv, SegHead, UpBlock
from decseg.models.dcf import DualScaleFusion


@contextmanager
def _frozen_bn_stats(module: nn.Module):
    """BatchNorm with momentum 0: normalises with batch statistics as in training but leaves
    the running statistics alone, so a checkpoint recomputation does not update them twice."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom


class FusionDecoder(nn.Module):
    """DCF on the five level pairs, then a plain U-Net decoder over the fused maps h5..h1."""

    def __init__(self, level_channels: Sequence[int], classes: int):
        super().__init__()
        c = list(level_channels)  # c1..c5, e.g. 64/256/512/1024/2048
        if len(c) != 5:
            raise ValueError("FusionDecoder needs 5 level widths")
        self.dcf1, self.dcf2, self.dcf3, self.dcf4, self.dcf5 = (DualScaleFusion(w) for w in c)
        self.bottleneck = DoubleConv(c[4], c[4])
        self.up4 = UpBlock(c[4], c[3], c[3])
        self.up3 = UpBlock(c[3], c[2], c[2])
        self.up2 = UpBlock(c[2], c[1], c[1])
        self.up1 = UpBlock(c[1], c[0], c[0])
        self.head = SegHead(c[0], classes)
        # Recompute the widest level in backward instead of storing it (train.checkpointing).
        self.checkpointing = False

    def _deepest(self, p5: torch.Tensor, q5: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.dcf5(p5, q5))

    def _deepest_checkpointed(self, p5: torch.Tensor, q5: torch.Tensor) -> torch.Tensor:
        calls = 0

        def run(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
            nonlocal calls
            calls += 1
            if calls == 1:  # the real forward pass
                return self._deepest(p, q)
            with _frozen_bn_stats(self):  # the recomputation in backward
                return self._deepest(p, q)

        return checkpoint(run, p5, q5, use_reentrant=False)

    def forward(self, full: Sequence[torch.Tensor], half: Sequence[torch.Tensor]) -> torch.Tensor:
        """``full``/``half``: ``[x5, d4, d3, d2, d1]`` from the two scale decoders."""
        if self.checkpointing and self.training and torch.is_grad_enabled():
            z = self._deepest_checkpointed(full[0], half[0])
        else:
            z = self._deepest(full[0], half[0])
        h4 = self.dcf4(full[1], half[1])
        h3 = self.dcf3(full[2], half[2])
        h2 = self.dcf2(full[3], half[3])
        h1 = self.dcf1(full[4], half[4])
        z = self.up4(z, h4)
        z = self.up3(z, h3)
        z = self.up2(z, h2)
        z = self.up1(z, h1)
        return self.head(z)
