"""timm encoder wrapper: five feature maps at strides 2, 4, 8, 16, 32 (docs/METHOD.md, docs/MODEL.md).

Any timm CNN works whose feature metadata (``feature_info``) has levels at exactly those
strides; their widths come from ``feature_info.channels()``. For ``C != 3`` input channels a
Conv3x3 (no bias, C -> 3) adapter comes first, so ImageNet weights still apply.
"""
from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import timm
import torch
from torch import nn

from decseg.io import safe_torch_load
from decseg.errors import ConfigError, DataError, PretrainedWeightsError

log = logging.getLogger(__name__)

REDUCTIONS = (2, 4, 8, 16, 32)
# Checked to build and run in this package (tests and docs/MODEL.md); other timm CNNs with
# levels at strides 2..32 work as well.
KNOWN_GOOD = ("res2net50d", "resnet18", "resnet34", "resnet50", "resnext50_32x4d",
              "efficientnet_b0", "mobilenetv3_large_100", "regnety_008")
OFFICIAL_RES2NET_FILE = "res2net50_v1b_26w_4s-3cf99910.pth"


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


def _check_name(name: str) -> None:
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"model.encoder={name!r} is not a timm model name.{hint} Encoders that work include: "
        f"{', '.join(KNOWN_GOOD)} (see docs/MODEL.md)."
    )


def _feature_levels(name: str) -> tuple[list[int], set[str]]:
    """timm ``out_indices`` of the levels at strides 2..32 and the classifier model's keys.

    Built on the meta device: only the metadata and key names are needed, no memory.
    """
    try:
        with torch.device("meta"):
            full = timm.create_model(name, pretrained=False)
    except Exception as e:  # a timm model that cannot even be built: say so, with its reason
        raise ConfigError(f"model.encoder={name!r}: timm cannot build it ({type(e).__name__}: {e})") from None
    info = getattr(full, "feature_info", None)
    reductions = [int(f["reduction"]) for f in info] if info else []
    # Take the deepest level at each required stride (e.g. vgg has several per stride).
    picked = {r: i for i, r in enumerate(reductions) if r in REDUCTIONS}
    missing = [r for r in REDUCTIONS if r not in picked]
    if missing:
        raise ConfigError(
            f"model.encoder={name!r} cannot be used: DEC-Seg needs five feature levels at strides "
            f"2, 4, 8, 16 and 32, this encoder has strides {reductions or 'none (no feature_info)'} "
            f"(missing {missing}). Transformers such as ViT keep one stride and ConvNeXt/Swin/PVT start at "
            f"stride 4. Encoders that work include: {', '.join(KNOWN_GOOD)}."
        )
    return [picked[r] for r in REDUCTIONS], set(full.state_dict().keys())


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Accept a plain state dict or one wrapped in {'state_dict': ...} / {'model': ...}."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise PretrainedWeightsError(
            f"model.pretrained={str(path)!r}: the file holds no state dict of tensors (plain, or under "
            f"'state_dict' / 'model'). Pass an ImageNet classification checkpoint such as {OFFICIAL_RES2NET_FILE}."
        )
    out = {}
    for k, v in obj.items():
        while k.startswith("module."):  # saved from DataParallel / DDP
            k = k[len("module."):]
        out[k] = v
    return out


def _first(items: list, n: int = 5) -> str:
    more = f" ... ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(str(i) for i in items[:n]) + more


def load_encoder_weights(backbone: nn.Module, path: Union[str, Path],
                         classifier_keys: set[str] = frozenset()) -> None:
    """Load an ImageNet checkpoint (official Res2Net or timm keys) into a features_only model.

    timm's features_only wrapper keeps the original module names and drops the classifier, so
    the file's keys map one to one; classifier keys (fc/classifier/head, or any key of the full
    timm model that the features model pruned) are ignored. Anything else must match exactly.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(
            f"model.pretrained={str(path)!r} is neither true/false nor an existing file. "
            f"{offline_help(getattr(backbone, 'decseg_encoder_name', 'res2net50d'))}"
        )
    obj = safe_torch_load(path, PretrainedWeightsError, f"model.pretrained={str(path)!r}",
                          "Pass a plain .pth state dict (e.g. the official Res2Net file).")
    state = _unwrap_state_dict(obj, path)
    expected = backbone.state_dict()
    head_keys = set(classifier_keys) - set(expected)
    head_prefixes = ("fc.", "classifier.", "head.", "last_linear.")
    is_head = lambda k: k in head_keys or k.startswith(head_prefixes)  # noqa: E731
    unexpected = [k for k in state if k not in expected and not is_head(k)]
    # num_batches_tracked is absent from checkpoints of old PyTorch versions; it is unused.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and state[k].shape != v.shape]
    if unexpected or missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (file vs encoder): {_first(mismatched)}")
        raise PretrainedWeightsError(
            f"model.pretrained={str(path)!r} does not fit encoder "
            f"{getattr(backbone, 'decseg_encoder_name', '?')!r}: {'; '.join(parts)}. Pass the ImageNet "
            f"checkpoint of the same architecture (for res2net50d: {OFFICIAL_RES2NET_FILE} or timm's "
            f"res2net50d state dict), or set model.encoder to the file's architecture."
        )
    backbone.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


class Encoder(nn.Module):
    """``forward(x) -> [f1..f5]`` at strides 2..32; ``channels`` holds their widths."""

    def __init__(self, name: str, in_channels: int = 3, pretrained: Union[bool, str, None] = False):
        """``pretrained``: True (timm weights), False (random, with a warning), a file path,
        or None (random without warning: the caller loads weights itself)."""
        super().__init__()
        _check_name(name)
        out_indices, classifier_keys = _feature_levels(name)
        self.name = name
        self.in_channels = in_channels
        # Learns a C -> 3 mapping shared by both scales so that 3-channel weights still apply.
        self.adapter = nn.Conv2d(in_channels, 3, 3, padding=1, bias=False) if in_channels != 3 else None
        use_hub = pretrained is True
        try:
            self.backbone = timm.create_model(name, pretrained=use_hub, features_only=True,
                                              out_indices=tuple(out_indices))
        except Exception as e:  # hub/network/cache failures surface as many exception types
            if not use_hub:
                raise
            reason = str(e).splitlines()[0] if str(e) else ""
            raise PretrainedWeightsError(
                f"model.pretrained=true: could not get ImageNet weights for model.encoder={name!r} "
                f"through timm ({type(e).__name__}: {reason}). {offline_help(name)}"
            ) from None
        self.backbone.decseg_encoder_name = name
        self.channels = list(self.backbone.feature_info.channels())
        self.reductions = list(self.backbone.feature_info.reduction())
        if tuple(self.reductions) != REDUCTIONS:  # the features model disagrees with its metadata
            raise ConfigError(f"model.encoder={name!r}: timm's features_only model gives strides "
                              f"{self.reductions}, DEC-Seg needs {list(REDUCTIONS)}. Encoders that work "
                              f"include: {', '.join(KNOWN_GOOD)}.")
        if pretrained is False:
            log.warning("model.pretrained=false: encoder %s starts from random weights; "
                        "results will be far below the paper's (ImageNet-initialised) numbers.", name)
        elif isinstance(pretrained, str):
            load_encoder_weights(self.backbone, pretrained, classifier_keys)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise DataError(
                f"the network expects images of shape (N, {self.in_channels}, H, W) "
                f"(data.channels={self.in_channels}) but got {tuple(x.shape)}; set data.channels to "
                f"the images' channel count or convert the images."
            )
        if self.adapter is not None:
            x = self.adapter(x)
        return list(self.backbone(x))
