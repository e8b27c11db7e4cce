"""Cross-level feature aggregation (CFA, docs/METHOD.md, "Network"): fuses f_k with f_{k+1}."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from decseg.models.blocks import CBR


class _Conv1x1BNReLU(nn.Sequential):
    # The paper's 1x1 projections keep their conv bias even though BN follows.
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.Conv2d(in_ch, out_ch, 1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class ChannelWeight(nn.Module):
    """``sigmoid(BN(Conv1x1(ReLU(BN(Conv1x1(avgpool(x)))))))``: a squeeze-excitation with BN.

    The BatchNorms act on 1x1 maps, so in training mode they normalise over the batch
    only: a training forward pass needs at least 2 samples.
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.squeeze = _Conv1x1BNReLU(channels, hidden)
        self.excite = nn.Sequential(nn.Conv2d(hidden, channels, 1), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(x, 1)
        return torch.sigmoid(self.excite(self.squeeze(pooled)))


class CrossLevelAggregation(nn.Module):
    """CFA_k: ``f_k`` (stride r) and ``f_{k+1}`` (stride 2r) -> 64 channels at stride r."""

    def __init__(self, low_ch: int, high_ch: int, mid_ch: int = 32, out_ch: int = 64, hidden: int = 16):
        super().__init__()
        self.proj_low = _Conv1x1BNReLU(low_ch, mid_ch)
        self.proj_high = _Conv1x1BNReLU(high_ch, mid_ch)
        self.merge = CBR(2 * mid_ch, out_ch)
        self.weight = ChannelWeight(out_ch, hidden)
        self.out = CBR(out_ch, out_ch)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        # Upsampled to exactly low's size (== x2 for sizes that are multiples of 32).
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=True)
        x = self.merge(torch.cat([self.proj_low(low), self.proj_high(high)], dim=1))
        x = x + x * self.weight(x)
        return self.out(x)
