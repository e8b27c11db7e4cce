"""Reconstruction generator for cross-generative consistency (docs/METHOD.md, "Network").

Segmentation logits (K channels) -> an image (C channels), an encoder-decoder WITHOUT skip
connections: the image must be regenerated from the segmentation alone.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

WIDTHS = (16, 32, 64, 128, 256)
ENCODER_DROPOUT = (0.05, 0.1, 0.2, 0.3, 0.5)


class GeneratorBlock(nn.Sequential):
    """Conv3x3 + BN + LeakyReLU(0.01) + Dropout(p) + Conv3x3 + BN + LeakyReLU(0.01)."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.LeakyReLU(0.01),
            nn.Dropout(dropout),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.LeakyReLU(0.01),
        )


class ReconstructionGenerator(nn.Module):
    """K -> C channels at the input's size (a multiple of 16)."""

    def __init__(self, in_channels: int, out_channels: int,
                 widths: Sequence[int] = WIDTHS, dropout: Sequence[float] = ENCODER_DROPOUT):
        super().__init__()
        w = list(widths)
        self.inc = GeneratorBlock(in_channels, w[0], dropout[0])
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), GeneratorBlock(w[i - 1], w[i], dropout[i])) for i in range(1, len(w))
        )
        self.up = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(w[i], w[i - 1], 2, stride=2), GeneratorBlock(w[i - 1], w[i - 1], 0.0))
            for i in range(len(w) - 1, 0, -1)
        )
        self.head = nn.Conv2d(w[0], out_channels, 3, padding=1)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        x = self.inc(logits)
        for layer in self.down:
            x = layer(x)
        for layer in self.up:
            x = layer(x)
        return self.head(x)
