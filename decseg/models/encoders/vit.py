"""Plain ViTs (ViT, DeiT, DINOv2, ... through timm names): one map of the last block, turned
into strides 4..32 by a simple feature pyramid (as in ViTDet), plus the learned stride-2 stem.

The token grid is made to be exactly S/16 cells for an S-pixel input whatever the patch size:
the image is resized to ``(S/16) * patch`` px first (352 -> 308 for patch 14; no resize for
patch 16), so the pyramid's maps sit at strides 4, 8, 16, 32 of the input for every size that
is a multiple of 32, the half-scale input included. timm builds the model for the full-scale
size (``img_size``, its position embedding resampled from the pretrained size) with
``dynamic_img_size=True`` for the half scale.
"""
from __future__ import annotations

import types
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from decseg.config import half_size
from decseg.errors import ConfigError, DataError
from decseg.models.encoders.common import (STEM_CHANNELS, Encoder, StrideTwoStem, TimmMetadata, create_timm,
                                           input_adapter, timm_metadata)
from decseg.models.encoders.hierarchical import size_kwargs
from timm.models.vision_transformer import VisionTransformer
from decseg.models.encoders.weights import apply_pretrained

GRID_STRIDE = 16  # the stride the token grid stands for, whatever the patch size


def pos_resize_matrix(old: int, new: int) -> torch.Tensor:
    """(new, old) matrix of timm's position-embedding resample (bicubic, antialiased) along one
    axis: that resize is separable and linear, so applying it to unit vectors gives its weights."""
    # Channel j holds e_j along H in two identical columns (a width of 1 is mis-handled by antialiasing).
    eye = torch.eye(old)[None, :, :, None].repeat(1, 1, 1, 2)
    out = F.interpolate(eye, size=(new, 2), mode="bicubic", antialias=True, align_corners=False)
    return out[0, :, :, 0].t().contiguous()


def _pos_embed_by_matrices(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's ``VisionTransformer._pos_embed`` for ``dynamic_img_size`` with the resample done as
    two constant matrix products: timm's antialiased bicubic interpolation has no ONNX export
    (TorchScript exporter), MatMul exports everywhere; the result is the same up to rounding."""
    b, h, w, c = x.shape
    pos = vit.pos_embed
    prefix_n = 0 if vit.no_embed_class else vit.num_prefix_tokens
    gh, gw = vit.patch_embed.grid_size
    if (h, w) != (gh, gw):
        rows = getattr(vit, f"decseg_pos_resize_{gh}_{h}", None)
        cols = getattr(vit, f"decseg_pos_resize_{gw}_{w}", None)
        if rows is None or cols is None:  # a size not prepared at build: timm's own resample
            rows = pos_resize_matrix(gh, h).to(pos.device)
            cols = pos_resize_matrix(gw, w).to(pos.device)
        grid = pos[:, prefix_n:].reshape(gh, gw, c).permute(2, 0, 1).float()
        grid = torch.matmul(torch.matmul(rows, grid), cols.t())
        pos = torch.cat([pos[:, :prefix_n], grid.permute(1, 2, 0).reshape(1, h * w, c).to(pos.dtype)], dim=1)
    x = x.reshape(b, h * w, c)
    prefix = [t.expand(b, -1, -1) for t in (vit.cls_token, vit.reg_token) if t is not None]
    if vit.no_embed_class:
        x = x + pos
        x = torch.cat(prefix + [x], dim=1) if prefix else x
    else:
        x = torch.cat(prefix + [x], dim=1) if prefix else x
        x = x + pos
    return vit.pos_drop(x)


def is_plain_vit(meta: TimmMetadata) -> bool:
    """One stride for every block, a patch embedding, and timm's intermediates API."""
    return (meta.patch_size is not None and meta.has_intermediates and len(set(meta.reductions)) == 1
            and meta.accepts("dynamic_img_size"))


class SimpleFeaturePyramid(nn.Module):
    """One stride-16 map of D channels -> maps at strides 4, 8, 16, 32 (D/4, D/2, D, D channels):
    two 2x2 deconvolutions (BN + GELU between) to stride 4, one to stride 8, the map itself at
    16, 2x2 max-pooling to 32."""

    def __init__(self, dim: int):
        super().__init__()
        self.to_stride4 = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), nn.BatchNorm2d(dim // 2), nn.GELU(),
            nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2),
        )
        self.to_stride8 = nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)
        self.to_stride32 = nn.MaxPool2d(2)
        self.channels = [dim // 4, dim // 2, dim, dim]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.to_stride4(x), self.to_stride8(x), x, self.to_stride32(x)]


class ViTEncoder(Encoder):
    """``stem`` (f1) and ``pyramid`` (f2..f5) over the last block of timm's ViT ``backbone``
    (final norm applied, prefix tokens dropped)."""

    def __init__(self, name: str, in_channels: int = 3, pretrained: Union[bool, str, None] = False,
                 img_size: int = 352, meta: Optional[TimmMetadata] = None):
        super().__init__()
        meta = meta or timm_metadata(name)
        ph, pw = meta.patch_size
        if ph != pw:
            raise ConfigError(f"model.encoder={name!r} has a non-square patch ({ph}x{pw}); DEC-Seg's pyramid "
                              f"needs square patches. Use e.g. vit_small_patch16_224 or vit_small_patch14_dinov2.")
        if img_size % 32:
            raise ConfigError(f"data.size={img_size} must be a multiple of 32 (the decoders halve it five times).")
        self.name = name
        self.in_channels = in_channels
        self.patch = int(ph)
        self.adapter = input_adapter(in_channels)
        self.stem = StrideTwoStem(3, STEM_CHANNELS)
        # Built for the full-scale grid (S/16 cells); dynamic_img_size serves the half scale.
        self.backbone = create_timm(name, pretrained is True,
                                    **size_kwargs(meta, img_size // GRID_STRIDE * self.patch))
        self.backbone.decseg_encoder_name = name
        self.backbone.prune_intermediate_layers(1, prune_norm=False, prune_head=True)
        if isinstance(self.backbone, VisionTransformer) and self.backbone.pos_embed is not None:
            # The half scale's resample as constant matrices (not saved in checkpoints), so it exports.
            full, half = img_size // GRID_STRIDE, half_size(img_size) // GRID_STRIDE
            self.backbone.register_buffer(f"decseg_pos_resize_{full}_{half}", pos_resize_matrix(full, half),
                                          persistent=False)
            self.backbone._pos_embed = types.MethodType(_pos_embed_by_matrices, self.backbone)
        dim = int(self.backbone.embed_dim)
        if dim % 4:
            raise ConfigError(f"model.encoder={name!r}: embedding width {dim} is not a multiple of 4.")
        self.pyramid = SimpleFeaturePyramid(dim)
        self.channels = [STEM_CHANNELS, *self.pyramid.channels]
        self.reductions = [2, 4, 8, 16, 32]
        apply_pretrained(self.backbone, name, pretrained, meta.keys, meta.filter_fn())

    def extra_modules(self) -> dict[str, nn.Module]:
        return {**super().extra_modules(), "stem": self.stem, "pyramid": self.pyramid}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.check_input(x)
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise DataError(f"encoder {self.name} got an input of {h}x{w} px; height and width must be "
                            f"multiples of 32 (set data.size to a multiple of 32).")
        grid = (h // GRID_STRIDE, w // GRID_STRIDE)
        tokens_in = x
        if self.patch != GRID_STRIDE:  # e.g. patch 14: 352 px -> 308 px, a 22 x 22 grid
            tokens_in = F.interpolate(x, size=(grid[0] * self.patch, grid[1] * self.patch),
                                      mode="bilinear", align_corners=False)
        (last,) = self.backbone.forward_intermediates(tokens_in, indices=1, norm=True,
                                                       output_fmt="NCHW", intermediates_only=True)
        return [self.stem(x), *self.pyramid(last)]
