"""DCF, dual-scale complementary fusion: one level's full-scale and half-scale decoder features
fused into one map (docs/METHOD.md, "DCF"). The fusion decoder (fusion_decoder.py) runs one
per level."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from decseg.models.blocks import CBR


class DualScaleFusion(nn.Module):
    """Fuses level features p (full-scale decoder) and q (half-scale decoder) of equal width."""

    def __init__(self, channels: int):
        super().__init__()
        self.p_in = CBR(channels, channels)
        self.q_in = CBR(channels, channels)
        self.p_out = CBR(channels, channels)
        self.q_out = CBR(channels, channels)
        self.gate = nn.Sequential(
            nn.Conv2d(2 * channels, 2, kernel_size=1, bias=False), nn.BatchNorm2d(2), nn.ReLU(inplace=True)
        )

    def forward(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        if q.shape[-2:] != p.shape[-2:]:
            q = F.interpolate(q, size=p.shape[-2:], mode="bilinear", align_corners=True)
        p1, q1 = self.p_in(p), self.q_in(q)
        # Each scale is enhanced by the other's self-gated features.
        p2 = p1 + torch.sigmoid(q1) * q1
        q2 = q1 + torch.sigmoid(p1) * p1
        p3, q3 = self.p_out(p2), self.q_out(q2)
        g = torch.softmax(self.gate(torch.cat([p3, q3], dim=1)), dim=1)
        return p3 * g[:, 0:1] + q3 * g[:, 1:2]
