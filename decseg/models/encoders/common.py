"""What every encoder family shares: timm name checks, metadata, the C->3 adapter, the stride-2 stem.

An encoder maps an image batch to five maps at strides 2, 4, 8, 16 and 32 and exposes their
widths (``channels``) and strides (``reductions``), so the decoders can be built from them.
"""
from __future__ import annotations

import difflib
import inspect
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

import timm
import torch
from torch import nn

from decseg.errors import ConfigError, DataError, PretrainedWeightsError

REDUCTIONS = (2, 4, 8, 16, 32)
HIERARCHICAL_REDUCTIONS = (4, 8, 16, 32)
# Checked to build and run in this package (tests and docs/MODEL.md).
KNOWN_GOOD = ("res2net50d", "resnet18", "resnet34", "resnet50", "resnext50_32x4d",
              "efficientnet_b0", "mobilenetv3_large_100", "regnety_008",
              "pvt_v2_b2", "convnext_tiny", "swin_tiny_patch4_window7_224", "efficientvit_b1",
              "vit_small_patch16_224", "vit_small_patch14_dinov2")
OFFICIAL_RES2NET_FILE = "res2net50_v1b_26w_4s-3cf99910.pth"
# Width of the learned stride-2 level of encoders whose first level is at stride 4: the paper's
# f1 width, which CFA1, DCF level 1 and the last decoder block are sized around.
STEM_CHANNELS = 64


def offline_help(name: str) -> str:
    """How to proceed without network access: random init, or a local weights file."""
    official = (f" For res2net50d the official file is {OFFICIAL_RES2NET_FILE} "
                "(github.com/Res2Net/Res2Net-PretrainedModels; the DEC-Seg README links a copy).")
    return (
        "Either run with --set model.pretrained=false (random init: results will be far below the "
        "paper), or fetch the weights on a machine with network and pass the file with "
        "--set model.pretrained=/path/to/file.pth."
        + (official if name.startswith("res2net50") else "")
        + " timm's weights can be saved with: python -c \"import timm, torch; torch.save(timm.create_model("
        f"'{name}', pretrained=True).state_dict(), '{name}.pth')\"."
    )


def check_name(name: str) -> None:
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    mit = (" timm has no MiT (SegFormer) encoder; use a PVTv2 (e.g. pvt_v2_b2) instead."
           if name.startswith(("mit_", "segformer")) else "")
    raise ConfigError(
        f"model.encoder={name!r} is not a timm model name.{hint}{mit} Encoders that work include: "
        f"{', '.join(KNOWN_GOOD)} (see docs/MODEL.md)."
    )


@dataclass(frozen=True)
class TimmMetadata:
    """What the classifier model of a timm name says about itself (built on the meta device)."""
    name: str
    reductions: list[int]
    channels: list[int]
    keys: frozenset[str]
    model_class: type
    patch_size: Optional[tuple[int, int]]
    has_intermediates: bool

    def accepts(self, argument: str) -> bool:
        """Whether the model class's constructor takes ``argument``."""
        return argument in inspect.signature(self.model_class.__init__).parameters

    def filter_fn(self) -> Optional[Callable[[dict, nn.Module], dict]]:
        """timm's converter of the family's official release files to timm keys, if it has one."""
        return getattr(sys.modules.get(self.model_class.__module__), "checkpoint_filter_fn", None)


def timm_metadata(name: str) -> TimmMetadata:
    """Feature metadata and key names of timm's classifier ``name``; no memory is allocated."""
    check_name(name)
    try:
        with torch.device("meta"):
            full = timm.create_model(name, pretrained=False)
    except Exception as e:  # a timm model that cannot even be built: say so, with its reason
        raise ConfigError(f"model.encoder={name!r}: timm cannot build it ({type(e).__name__}: {e})") from None
    info = getattr(full, "feature_info", None) or []
    patch = getattr(getattr(full, "patch_embed", None), "patch_size", None)
    if isinstance(patch, int):  # some families keep one int, timm's ViTs a pair
        patch = (patch, patch)
    elif not (isinstance(patch, (tuple, list)) and len(patch) == 2):
        patch = None
    return TimmMetadata(
        name=name,
        reductions=[int(f["reduction"]) for f in info],
        channels=[int(f["num_chs"]) for f in info],
        keys=frozenset(full.state_dict().keys()),
        model_class=type(full),
        patch_size=tuple(int(p) for p in patch) if patch is not None else None,
        has_intermediates=callable(getattr(full, "forward_intermediates", None)),
    )


def create_timm(name: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """``timm.create_model``; a failure to get the pretrained weights is a one-line error."""
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as e:  # hub/network/cache failures surface as many exception types
        if not pretrained:
            raise
        reason = str(e).splitlines()[0] if str(e) else ""
        raise PretrainedWeightsError(
            f"model.pretrained=true: could not get ImageNet weights for model.encoder={name!r} "
            f"through timm ({type(e).__name__}: {reason}). {offline_help(name)}"
        ) from None


def input_adapter(in_channels: int) -> Optional[nn.Module]:
    # Learns a C -> 3 mapping shared by both scales so that 3-channel weights still apply.
    return nn.Conv2d(in_channels, 3, 3, padding=1, bias=False) if in_channels != 3 else None


class StrideTwoStem(nn.Sequential):
    """The f1 level for encoders that start at stride 4: two CBR from the (3-channel) image,
    the first with stride 2 (3 -> 32 -> ``out_ch``), so f1 carries the pixel detail that a
    stride-4 patch embedding discards."""

    def __init__(self, in_ch: int = 3, out_ch: int = STEM_CHANNELS, mid_ch: int = 32):
        super().__init__(
            nn.Conv2d(in_ch, mid_ch, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(mid_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class Encoder(nn.Module):
    """``forward(x) -> [f1..f5]`` at strides 2..32 (``reductions``); ``channels`` holds their widths.

    Subclasses: ``CNNEncoder`` (timm CNNs with all five levels), ``HierarchicalEncoder``
    (four levels at strides 4..32 plus a learned stride-2 stem), ``ViTEncoder`` (a plain ViT
    through a simple feature pyramid plus the stem).
    """

    name: str
    in_channels: int
    channels: list[int]
    reductions: list[int]
    adapter: Optional[nn.Module]

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """Validate the batch and apply the C -> 3 adapter."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise DataError(
                f"the network expects images of shape (N, {self.in_channels}, H, W) "
                f"(data.channels={self.in_channels}) but got {tuple(x.shape)}; set data.channels to "
                f"the images' channel count or convert the images."
            )
        return self.adapter(x) if self.adapter is not None else x

    def extra_modules(self) -> dict[str, nn.Module]:
        """The modules decseg adds around the timm backbone (for ``decseg summary``)."""
        return {"adapter": self.adapter} if self.adapter is not None else {}
