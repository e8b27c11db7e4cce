"""Encoders: five maps at strides 2, 4, 8, 16, 32 from any suitable timm name (docs/MODEL.md).

``create_encoder(name, ...)`` reads timm's feature metadata and picks the family:

- ``CNNEncoder`` (cnn.py): levels at all five strides (Res2Net, ResNet, EfficientNet, ...);
- ``HierarchicalEncoder`` (hierarchical.py): four levels at strides 4..32 (PVTv2, Swin,
  ConvNeXt, EfficientViT, ...) plus a learned stride-2 stem;
- ``ViTEncoder`` (vit.py): plain ViTs (ViT, DeiT, DINOv2) through a simple feature pyramid
  plus the stem.
"""
from __future__ import annotations

from typing import Union

from decseg.errors import ConfigError
from decseg.models.encoders.cnn import CNNEncoder, cnn_out_indices
from decseg.models.encoders.common import (KNOWN_GOOD, OFFICIAL_RES2NET_FILE, REDUCTIONS, STEM_CHANNELS, Encoder,
                                           StrideTwoStem, offline_help, timm_metadata)
from decseg.models.encoders.hierarchical import HierarchicalEncoder, hierarchical_indices
from decseg.models.encoders.vit import SimpleFeaturePyramid, ViTEncoder, is_plain_vit
from decseg.models.encoders.weights import load_encoder_weights


def create_encoder(name: str, in_channels: int = 3, pretrained: Union[bool, str, None] = False,
                   img_size: int = 352) -> Encoder:
    """The encoder for timm name ``name``; ``img_size`` is the full-scale input size (data.size).

    ``pretrained``: True (timm weights), False (random, with a warning), a file path, or None
    (random without warning: the caller loads weights itself).
    """
    meta = timm_metadata(name)
    if cnn_out_indices(meta) is not None:
        return CNNEncoder(name, in_channels, pretrained, meta=meta)
    if hierarchical_indices(meta) is not None and meta.has_intermediates:
        return HierarchicalEncoder(name, in_channels, pretrained, img_size=img_size, meta=meta)
    if is_plain_vit(meta):
        return ViTEncoder(name, in_channels, pretrained, img_size=img_size, meta=meta)
    strides = meta.reductions or "none (no feature_info)"
    why = ("it has no forward_intermediates in timm" if hierarchical_indices(meta) is not None
           else f"its feature strides are {strides}")
    raise ConfigError(
        f"model.encoder={name!r} cannot be used: DEC-Seg needs feature levels at strides 2, 4, 8, 16 "
        f"and 32 (CNNs), at 4, 8, 16 and 32 (hierarchical transformers such as PVTv2, Swin, ConvNeXt), "
        f"or a plain ViT; {why}. Encoders that work include: {', '.join(KNOWN_GOOD)} (see docs/MODEL.md)."
    )


__all__ = ["CNNEncoder", "Encoder", "HierarchicalEncoder", "KNOWN_GOOD", "OFFICIAL_RES2NET_FILE",
           "REDUCTIONS", "STEM_CHANNELS", "SimpleFeaturePyramid", "StrideTwoStem", "ViTEncoder",
           "create_encoder", "load_encoder_weights", "offline_help"]
