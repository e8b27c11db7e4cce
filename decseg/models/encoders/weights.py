"""Local ImageNet weights for an encoder's timm backbone (``model.pretrained=/path/to/file``).

Accepted: timm state dicts of the same architecture, the official release files whose keys
timm's family module converts (its ``checkpoint_filter_fn``: Res2Net needs none, PVTv2,
ConvNeXt, Swin, DINOv2 ... have one), plain or wrapped in ``{'state_dict'|'model': ...}``,
with or without ``module.`` prefixes, as ``.pth`` or ``.safetensors``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from decseg.errors import PretrainedWeightsError
from decseg.io import safe_torch_load
from decseg.models.encoders.common import OFFICIAL_RES2NET_FILE, offline_help

log = logging.getLogger(__name__)

HEAD_PREFIXES = ("fc.", "classifier.", "head.", "last_linear.")


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


def _read(path: Path) -> Any:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise PretrainedWeightsError(f"model.pretrained={str(path)!r} cannot be read as a safetensors "
                                         f"file ({e}); pass an intact .safetensors or .pth file.") from None
    return safe_torch_load(path, PretrainedWeightsError, f"model.pretrained={str(path)!r}",
                           "Pass a plain .pth state dict (e.g. the official Res2Net file).")


def _first(items: list, n: int = 5) -> str:
    more = f" ... ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(str(i) for i in items[:n]) + more


def apply_pretrained(backbone: nn.Module, name: str, pretrained: Union[bool, str, None],
                     classifier_keys: Union[set[str], frozenset[str]] = frozenset(),
                     filter_fn: Optional[Callable[[dict, nn.Module], dict]] = None) -> None:
    """The ``model.pretrained`` rule shared by every encoder kind, after the backbone is built:
    True (timm's weights, already loaded by ``create_timm``), False (random, with a warning),
    a file path (loaded here), or None (random without warning: the caller loads weights)."""
    if pretrained is False:
        log.warning("model.pretrained=false: encoder %s starts from random weights; "
                    "results will be far below the paper's (ImageNet-initialised) numbers.", name)
    elif isinstance(pretrained, str):
        load_encoder_weights(backbone, pretrained, classifier_keys, filter_fn)


def load_encoder_weights(backbone: nn.Module, path: Union[str, Path],
                         classifier_keys: Union[set[str], frozenset[str]] = frozenset(),
                         filter_fn: Optional[Callable[[dict, nn.Module], dict]] = None) -> None:
    """Load an ImageNet checkpoint into ``backbone`` (a timm features model or pruned classifier).

    ``filter_fn`` (timm's ``checkpoint_filter_fn`` of the family) converts official release keys
    to timm's and resamples position embeddings to the backbone's size. Classifier keys
    (fc/classifier/head, or any key of the full timm model that the backbone pruned) are
    ignored. Anything else must match exactly.
    """
    path = Path(path).expanduser()
    name = getattr(backbone, "decseg_encoder_name", "res2net50d")
    if not path.is_file():
        raise PretrainedWeightsError(
            f"model.pretrained={str(path)!r} is neither true/false nor an existing file. {offline_help(name)}"
        )
    state = _unwrap_state_dict(_read(path), path)
    converter_note = ""
    if filter_fn is not None:
        try:
            state = filter_fn(state, backbone)
        except Exception as e:  # a foreign file trips the converter in many ways: report its keys below
            converter_note = f" (timm's converter for the family did not apply: {type(e).__name__}: {e})"
    expected = backbone.state_dict()
    head_keys = set(classifier_keys) - set(expected)
    is_head = lambda k: k in head_keys or k.startswith(HEAD_PREFIXES)  # noqa: E731
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
            f"model.pretrained={str(path)!r} does not fit encoder {name!r}: {'; '.join(parts)}"
            f"{converter_note}. Pass the "
            f"ImageNet checkpoint of the same architecture (for res2net50d: {OFFICIAL_RES2NET_FILE} or timm's "
            f"res2net50d state dict), or set model.encoder to the file's architecture."
        )
    backbone.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
