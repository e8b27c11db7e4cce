"""Hierarchical transformers and CNNs with four levels at strides 4, 8, 16, 32 (PVTv2, Swin,
ConvNeXt, EfficientViT, ...), plus a learned stride-2 stem for f1.

The backbone is timm's classifier with its head (and final norm) pruned, run through timm's
``forward_intermediates`` (NCHW maps for every family, Swin's NHWC stages included), so its
parameter names are the classifier's: timm state dicts and, through timm's
``checkpoint_filter_fn``, the official release files load as they are.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import timm
import torch
from torch import nn

from decseg.config import half_size
from decseg.errors import ConfigError, DataError
from decseg.models.encoders.common import (HIERARCHICAL_REDUCTIONS, STEM_CHANNELS, Encoder, StrideTwoStem,
                                           TimmMetadata, create_timm, input_adapter, timm_metadata)
from decseg.models.encoders.weights import apply_pretrained


def hierarchical_indices(meta: TimmMetadata) -> Optional[list[int]]:
    """Stage indices of the deepest level at each of strides 4..32, or None if one is missing."""
    picked = {r: i for i, r in enumerate(meta.reductions) if r in HIERARCHICAL_REDUCTIONS}
    if any(r not in picked for r in HIERARCHICAL_REDUCTIONS):
        return None
    return [picked[r] for r in HIERARCHICAL_REDUCTIONS]


def size_kwargs(meta: TimmMetadata, img_size: int) -> dict[str, Any]:
    """Constructor arguments that let a size-bound family (Swin, ViT) take both scales' inputs."""
    kw: dict[str, Any] = {}
    if meta.accepts("img_size"):
        kw["img_size"] = img_size
    if meta.accepts("dynamic_img_size"):
        kw["dynamic_img_size"] = True
    elif meta.accepts("strict_img_size"):
        kw["strict_img_size"] = False
    return kw


def check_both_scales(meta: TimmMetadata, kwargs: dict[str, Any], indices: list[int], img_size: int) -> None:
    """Run a meta-device copy (no memory) at the full and the half-scale size: some families
    (e.g. Hiera, CoaT) are bound to their build size, and a stage index must give the stride
    its metadata claims. ConfigError otherwise, before any weights are built."""
    with torch.device("meta"):
        probe = timm.create_model(meta.name, pretrained=False, **kwargs)
    probe.prune_intermediate_layers(indices, prune_norm=True, prune_head=True)
    probe.eval()
    for size in (img_size, half_size(img_size)):
        try:
            with torch.no_grad():
                feats = probe.forward_intermediates(torch.empty(1, 3, size, size, device="meta"), indices=indices,
                                                    stop_early=True, intermediates_only=True)
        except Exception as e:  # timm's families fail on a wrong size in many ways
            reason = str(e).splitlines()[0][:160] if str(e) else ""
            raise ConfigError(
                f"model.encoder={meta.name!r} does not run at {size} px ({type(e).__name__}: {reason}); DEC-Seg runs "
                f"the encoder at data.size={img_size} and at the half scale {half_size(img_size)}, so it needs a "
                f"family that takes any multiple of 32 (e.g. pvt_v2_b2, convnext_tiny, swin_tiny_patch4_window7_224)."
            ) from None
        got = [(int(f.shape[1]), size // int(f.shape[-1])) for f in feats]
        want = [(meta.channels[i], r) for i, r in zip(indices, HIERARCHICAL_REDUCTIONS)]
        if got != want:
            raise ConfigError(f"model.encoder={meta.name!r}: its stages give (width, stride) {got} at {size} px, "
                              f"its feature metadata says {want}; it cannot be used.")


class HierarchicalEncoder(Encoder):
    """``stem`` (f1, stride 2, 64 ch) and the backbone's four stages (f2..f5, strides 4..32)."""

    def __init__(self, name: str, in_channels: int = 3, pretrained: Union[bool, str, None] = False,
                 img_size: int = 352, meta: Optional[TimmMetadata] = None):
        super().__init__()
        meta = meta or timm_metadata(name)
        indices = hierarchical_indices(meta)
        if indices is None or not meta.has_intermediates:
            raise ValueError(f"{name}: not a four-level timm encoder with forward_intermediates")
        self.name = name
        self.in_channels = in_channels
        self.adapter = input_adapter(in_channels)
        self.stem = StrideTwoStem(3, STEM_CHANNELS)
        kwargs = size_kwargs(meta, img_size)
        check_both_scales(meta, kwargs, indices, img_size)
        self.backbone = create_timm(name, pretrained is True, **kwargs)
        self.backbone.decseg_encoder_name = name
        kept = self.backbone.prune_intermediate_layers(indices, prune_norm=True, prune_head=True)
        self.indices = list(kept) if kept is not None else indices
        self.channels = [STEM_CHANNELS] + [meta.channels[i] for i in indices]
        self.reductions = [2, 4, 8, 16, 32]
        apply_pretrained(self.backbone, name, pretrained, meta.keys, meta.filter_fn())

    def extra_modules(self) -> dict[str, nn.Module]:
        return {**super().extra_modules(), "stem": self.stem}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.check_input(x)
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise DataError(f"encoder {self.name} got an input of {tuple(x.shape[-2:])} px; height and width "
                            f"must be multiples of 32 (set data.size to a multiple of 32).")
        feats = self.backbone.forward_intermediates(x, indices=self.indices, stop_early=True,
                                                    intermediates_only=True)
        return [self.stem(x), *feats]
