"""timm CNNs whose feature metadata has all five levels, at strides exactly 2, 4, 8, 16, 32.

The widths come from ``feature_info.channels()`` (the deepest level at each stride is used;
vgg has several per stride). For ``C != 3`` input channels a Conv3x3 (no bias, C -> 3) adapter
comes first, so ImageNet weights still apply.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from decseg.errors import ConfigError
from decseg.models.encoders.common import (KNOWN_GOOD, REDUCTIONS, Encoder, TimmMetadata, create_timm,
                                           input_adapter, timm_metadata)
from decseg.models.encoders.weights import apply_pretrained


def cnn_out_indices(meta: TimmMetadata) -> Optional[list[int]]:
    """timm ``out_indices`` of the levels at strides 2..32, or None if one is missing."""
    picked = {r: i for i, r in enumerate(meta.reductions) if r in REDUCTIONS}
    if any(r not in picked for r in REDUCTIONS):
        return None
    return [picked[r] for r in REDUCTIONS]


class CNNEncoder(Encoder):
    """A timm ``features_only`` CNN (``backbone``), after the optional C -> 3 ``adapter``."""

    def __init__(self, name: str, in_channels: int = 3, pretrained: Union[bool, str, None] = False,
                 meta: Optional[TimmMetadata] = None):
        """``pretrained``: True (timm weights), False (random, with a warning), a file path,
        or None (random without warning: the caller loads weights itself)."""
        super().__init__()
        meta = meta or timm_metadata(name)
        out_indices = cnn_out_indices(meta)
        if out_indices is None:
            raise ConfigError(f"model.encoder={name!r} has feature strides {meta.reductions}, not 2..32; "
                              f"build it with decseg.models.build_encoder instead.")
        self.name = name
        self.in_channels = in_channels
        self.adapter = input_adapter(in_channels)
        self.backbone = create_timm(name, pretrained is True, features_only=True, out_indices=tuple(out_indices))
        self.backbone.decseg_encoder_name = name
        self.channels = list(self.backbone.feature_info.channels())
        self.reductions = list(self.backbone.feature_info.reduction())
        if tuple(self.reductions) != REDUCTIONS:  # the features model disagrees with its metadata
            raise ConfigError(f"model.encoder={name!r}: timm's features_only model gives strides "
                              f"{self.reductions}, DEC-Seg needs {list(REDUCTIONS)}. Encoders that work "
                              f"include: {', '.join(KNOWN_GOOD)}.")
        apply_pretrained(self.backbone, name, pretrained, meta.keys)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.backbone(self.check_input(x)))
