"""Scale decoder (docs/METHOD.md, "Network"): a U-Net decoder over the five encoder levels."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from decseg.models.blocks import SegHead, UpBlock


class ScaleDecoder(nn.Module):
    """Decodes ``f5`` with skips ``s4..s1`` (CFA outputs g4..g1, or raw f4..f1 without CFA).

    Level k's width equals the encoder's width ``c_k`` (1024/512/256/64 for Res2Net-50,
    i.e. half of the input for the first three blocks and a quarter for the last).
    """

    def __init__(self, encoder_channels: Sequence[int], skip_channels: Sequence[int], classes: int):
        super().__init__()
        c = list(encoder_channels)
        if len(c) != 5 or len(skip_channels) != 4:
            raise ValueError("ScaleDecoder needs 5 encoder widths and 4 skip widths")
        # up4 maps c5 -> c4 with skip s4, ..., up1 maps c2 -> c1 with skip s1.
        self.up4 = UpBlock(c[4], skip_channels[3], c[3])
        self.up3 = UpBlock(c[3], skip_channels[2], c[2])
        self.up2 = UpBlock(c[2], skip_channels[1], c[1])
        self.up1 = UpBlock(c[1], skip_channels[0], c[0])
        self.head = SegHead(c[0], classes)

    def forward(self, f5: torch.Tensor, skips: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns ``(logits, [f5, d4, d3, d2, d1])``; skips are ordered s1..s4."""
        d4 = self.up4(f5, skips[3])
        d3 = self.up3(d4, skips[2])
        d2 = self.up2(d3, skips[1])
        d1 = self.up1(d2, skips[0])
        return self.head(d1), [f5, d4, d3, d2, d1]
