"""Small building blocks shared by the decoders (docs/METHOD.md, "Network").

CBR = Conv3x3 (no bias) + BatchNorm + ReLU; DoubleConv = two CBR with mid = out;
UpBlock = ConvTranspose2d(k=2, s=2) then DoubleConv(cat[skip, up]); SegHead = Conv3x3 + bilinear x2.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CBR(nn.Sequential):
    """Conv (no bias, the BN that follows has one) + BatchNorm + ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two CBR, the middle width equal to the output width."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(CBR(in_ch, out_ch), CBR(out_ch, out_ch))


class UpBlock(nn.Module):
    """U-Net up block: ``DoubleConv(cat[skip, ConvT(x)])``."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        self.conv = DoubleConv(skip_ch + out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class SegHead(nn.Module):
    """Conv3x3 (with bias) to K logits at stride 2, then bilinear x2 to the input size."""

    def __init__(self, in_ch: int, classes: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, classes, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(x), scale_factor=2, mode="bilinear", align_corners=False)
