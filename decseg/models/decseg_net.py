"""DEC-Seg network: shared encoder, CFA, two scale decoders and the DCF fusion decoder."""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from decseg.config import INTERPOLATIONS
from decseg.config import half_size as _half_size
from decseg.errors import ConfigError, DataError
from decseg.models.cfa import CrossLevelAggregation
from decseg.models.scale_decoder import ScaleDecoder
from decseg.models.encoder import Encoder
from decseg.models.fusion_decoder import FusionDecoder

CFA_CHANNELS = 64

# data.interpolation -> torch resize of the image tensor to the half scale
_RESIZE = {
    "area": dict(mode="area"),
    "bilinear": dict(mode="bilinear", align_corners=False, antialias=True),
    "parity": dict(mode="nearest-exact"),  # the released code resizes images by nearest neighbour
}
assert tuple(_RESIZE) == INTERPOLATIONS, "one resize per data.interpolation choice"


def resize_image(x: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """Resize an image batch the way ``data.interpolation`` says (area | bilinear | parity)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if interpolation not in _RESIZE:  # a validated config never gets here
        raise ValueError(f"unknown interpolation {interpolation!r}; use one of {INTERPOLATIONS}")
    return F.interpolate(x, size=size, **_RESIZE[interpolation])


class DECSegNet(nn.Module):
    """``forward(x, x_half) -> (o1, o2, o3)``: logits of the full-scale decoder (at S), the
    half-scale decoder (at s, None without ``sc``) and the fusion decoder (at S, None without
    ``dcf``). The prediction is o3, or o1 when ``dcf`` is off."""

    def __init__(self, encoder: Encoder, classes: int = 2, cfa: bool = True, sc: bool = True,
                 dcf: bool = True, size: int = 352, interpolation: str = "area"):
        super().__init__()
        if sc and _half_size(size) < 32:
            raise ConfigError(f"data.size={size} gives a half-scale input of {_half_size(size)} px; the second "
                              f"decoder needs at least 32 px. Use data.size >= 64, or model.sc=false.")
        self.encoder = encoder
        c = encoder.channels
        self.use_cfa, self.use_sc, self.use_dcf = cfa, sc, dcf
        self.classes = classes
        self.size = size
        self.interpolation = interpolation
        # One set of CFA modules serves both scales (the paper's totals count them once).
        self.cfa = nn.ModuleList(CrossLevelAggregation(c[k], c[k + 1]) for k in range(4)) if cfa else None
        skips = [CFA_CHANNELS] * 4 if cfa else c[:4]
        self.decoder_full = ScaleDecoder(c, skips, classes)
        self.decoder_half = ScaleDecoder(c, skips, classes) if sc else None
        self.fusion = FusionDecoder(c, classes) if dcf else None

    def use_activation_checkpointing(self, enabled: bool) -> bool:
        """Recompute the widest fusion level in backward instead of storing it (same result,
        less memory). Returns whether the network has that level (DCF on)."""
        if self.fusion is None:
            return False
        self.fusion.checkpointing = bool(enabled)
        return True

    def half_size(self, size: Union[int, tuple[int, int], None] = None) -> Union[int, tuple[int, int]]:
        """``s = 32 * round(S / 64)`` for S (default: the configured ``data.size``); per side for (H, W)."""
        size = self.size if size is None else size
        if isinstance(size, int):
            return _half_size(size)
        return tuple(_half_size(int(v)) for v in size)

    def make_half(self, x: torch.Tensor) -> torch.Tensor:
        """The half-scale view of ``x``, resized with the configured ``data.interpolation``."""
        if min(x.shape[-2:]) < 64:
            raise DataError(f"an input of {tuple(x.shape[-2:])} px has no half scale of >= 32 px; "
                            f"the two-scale network needs inputs of at least 64 px.")
        return resize_image(x, self.half_size(tuple(x.shape[-2:])), self.interpolation)

    def _check_input(self, x: torch.Tensor, what: str) -> None:
        if x.ndim != 4:
            raise DataError(f"{what} must be a batch of shape (N, C, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise DataError(f"{what} has size {h}x{w}; the encoder downsamples by 32, so height and width "
                            f"must be multiples of 32 (set data.size to a multiple of 32).")
        if self.training and x.shape[0] < 2 and self.use_cfa:
            raise DataError(
                f"{what}: a training forward pass got a batch of {x.shape[0]}; CFA's channel weight "
                f"normalises over the batch after global pooling, so a pass in training mode needs "
                f">= 2 samples. Pass more samples, or call net.eval() to predict single images."
            )

    def _decode(self, feats: list[torch.Tensor], decoder: ScaleDecoder):
        if self.cfa is not None:
            skips = [self.cfa[k](feats[k], feats[k + 1]) for k in range(4)]
        else:
            skips = feats[:4]
        return decoder(feats[4], skips)

    def forward(self, x: torch.Tensor, x_half: Optional[torch.Tensor] = None):
        self._check_input(x, "the full-scale input")
        o1, levels_full = self._decode(self.encoder(x), self.decoder_full)
        if self.decoder_half is None:
            return o1, None, None
        if x_half is None:
            x_half = self.make_half(x)
        self._check_input(x_half, "the half-scale input")
        o2, levels_half = self._decode(self.encoder(x_half), self.decoder_half)
        o3 = self.fusion(levels_full, levels_half) if self.fusion is not None else None
        return o1, o2, o3

    def forward_feature_dropout(self, x: torch.Tensor, x_half: Optional[torch.Tensor] = None,
                                p: float = 0.5):
        """UniMatch's feature perturbation: ``(clean, perturbed)``, each ``(o1, o2, o3)``.

        The encoder runs once per scale; every encoder level ``f`` is decoded as
        ``cat[f, dropout2d(f, p)]`` along the batch (channel dropout, always on), so the clean
        and the perturbed halves share one decoder pass and its BatchNorm statistics, as in
        UniMatch's U-Net (``need_fp``). Weights, state-dict keys and ``forward`` are unchanged.
        """
        self._check_input(x, "the full-scale input")

        def both(feats: list[torch.Tensor]) -> list[torch.Tensor]:
            return [torch.cat([f, F.dropout2d(f, p, training=True)]) for f in feats]

        o1, levels_full = self._decode(both(self.encoder(x)), self.decoder_full)
        o2 = o3 = None
        if self.decoder_half is not None:
            if x_half is None:
                x_half = self.make_half(x)
            self._check_input(x_half, "the half-scale input")
            o2, levels_half = self._decode(both(self.encoder(x_half)), self.decoder_half)
            o3 = self.fusion(levels_full, levels_half) if self.fusion is not None else None
        halves = [o.chunk(2) if o is not None else (None, None) for o in (o1, o2, o3)]
        return tuple(h[0] for h in halves), tuple(h[1] for h in halves)

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Prediction logits at x's size: o3, or o1 when DCF is off."""
        if self.fusion is None:
            self._check_input(x, "the full-scale input")
            return self._decode(self.encoder(x), self.decoder_full)[0]
        o1, o2, o3 = self.forward(x, None)
        return o3
