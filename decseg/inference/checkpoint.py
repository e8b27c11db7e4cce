"""Checkpoints: atomic save, safe load (``weights_only=True`` always), compatibility checks.

Layout of a checkpoint file (a dict of tensors and primitive containers only)::

    format_version  int
    config          the resolved config as a plain dict
    iteration       completed training iterations
    best_val_dice   best validation Dice so far (None before the first validation)
    model           the segmentation network's state dict: all that inference needs
    resume          (last.pt only) generators, optimizer, scaler, EMA, loader and RNG states

numpy arrays and scalars found in ``resume`` (e.g. in a loader state) are stored as tagged
tensors so that the file still loads with ``weights_only=True``; ``from_safe`` undoes it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from decseg.config import Config, config_from_dict
from decseg.io import safe_torch_load
from decseg.errors import CheckpointError, ConfigError
from decseg.io import atomic_write

FORMAT_VERSION = 1
# Keys that change the network's parameters: a checkpoint only fits a config that agrees on them.
ARCH_KEYS = ("data.channels", "data.classes", "model.encoder", "model.cfa", "model.sc", "model.dcf")
_NDARRAY_TAG = "__ndarray__"
_NPSCALAR_TAG = "__npscalar__"


# -- numpy <-> tensor encoding ---------------------------------------------------------------

def to_safe(obj: Any) -> Any:
    """Recursively replace numpy arrays/scalars by tagged tensors; tuples become lists."""
    if isinstance(obj, np.ndarray):
        return {_NDARRAY_TAG: torch.from_numpy(np.ascontiguousarray(obj)).clone(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return {_NPSCALAR_TAG: obj.item(), "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        return {k: to_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_safe(v) for v in obj]
    return obj


def from_safe(obj: Any) -> Any:
    """Inverse of :func:`to_safe` (lists stay lists)."""
    if isinstance(obj, dict):
        if _NDARRAY_TAG in obj:
            return obj[_NDARRAY_TAG].numpy().astype(obj["dtype"], copy=True)
        if _NPSCALAR_TAG in obj:
            return np.dtype(obj["dtype"]).type(obj[_NPSCALAR_TAG])
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_safe(v) for v in obj]
    return obj


# -- save / load -----------------------------------------------------------------------------

def save_checkpoint(path: str | Path, *, model_state: dict, config: Config | dict, iteration: int,
                    best_val_dice: float | None, resume: dict | None = None) -> None:
    """Write a checkpoint atomically: on any failure ``path`` keeps its previous content.

    A write error (full disk, quota, permissions) becomes a CheckpointError that says so.
    """
    path = Path(path)
    payload = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict() if isinstance(config, Config) else dict(config),
        "iteration": int(iteration),
        "best_val_dice": None if best_val_dice is None else float(best_val_dice),
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
    }
    if resume is not None:
        payload["resume"] = to_safe(resume)
    try:
        atomic_write(path, lambda tmp: torch.save(payload, tmp))
    except (OSError, RuntimeError) as e:  # torch's zip writer reports I/O errors as RuntimeError
        raise CheckpointError(
            f"could not write checkpoint {path}: {e}. The previous checkpoint (if any) is intact; "
            f"free disk space or fix permissions, then continue with --resume"
        ) from e


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint; every failure is a CheckpointError naming the file.

    ``path``: a ``.pt`` file (read with ``weights_only=True``), a folder written by ``decseg export
    --hf`` (model.safetensors + config.json, see decseg.inference.hub), or the hub id
    ``OWNER/NAME`` of an uploaded one when no local path of that name exists. A folder gives the
    same dict as a ``.pt`` file (without ``resume``), plus ``weights_file`` and ``export``.
    """
    from decseg.inference import hub

    if hub.looks_like_hub_id(path):
        return hub.load_export_dir(hub.download(str(path)), map_location=map_location)
    path = Path(path)
    if hub.is_export_dir(path):
        return hub.load_export_dir(path, map_location=map_location)
    if path.is_dir():
        found = [p for p in (path / "checkpoints" / "best.pt", path / "best.pt", path / "checkpoints" / "last.pt",
                             path / "last.pt") if p.is_file()]
        which = f"e.g. --checkpoint {found[0]}" if found else "e.g. RUN/checkpoints/best.pt of a training run"
        raise CheckpointError(f"checkpoint {path} is a folder; pass the checkpoint file itself ({which}), or a "
                              f"folder written by decseg export --hf")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    ckpt = safe_torch_load(path, CheckpointError, f"checkpoint {path}",
                           "Use another checkpoint (e.g. best.pt) written by decseg train, or retrain.",
                           map_location=map_location)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(
            f"{path} is not a decseg checkpoint (expected a dict with 'model' and 'config'); "
            f"use a file from RUN/checkpoints/"
        )
    version = ckpt.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version={version!r}; this decseg reads version "
            f"{FORMAT_VERSION}. Use the decseg version that wrote it"
        )
    return ckpt


def stored_config(ckpt: dict, path: str | Path = "<checkpoint>") -> Config:
    """The typed config stored in a checkpoint (validated)."""
    try:
        return config_from_dict(ckpt["config"], source=f"{path} (stored config)").validate()
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path}: its stored config is invalid: {e}") from None


def architecture_differences(stored: Config | dict, cfg: Config | dict) -> list[str]:
    """``["model.encoder: checkpoint 'resnet18' vs config 'res2net50d'", ...]`` for ARCH_KEYS."""
    a = stored.to_dict() if isinstance(stored, Config) else stored
    b = cfg.to_dict() if isinstance(cfg, Config) else cfg
    diffs = []
    for key in ARCH_KEYS:
        section, name = key.split(".")
        va, vb = a.get(section, {}).get(name), b.get(section, {}).get(name)
        if va != vb:
            diffs.append(f"{key}: checkpoint {va!r} vs config {vb!r}")
    return diffs


def check_compatible(ckpt: dict, cfg: Config, path: str | Path = "<checkpoint>") -> None:
    """Raise CheckpointError listing the architecture keys where ``cfg`` differs from the checkpoint."""
    diffs = architecture_differences(ckpt["config"], cfg)
    if diffs:
        raise CheckpointError(
            f"checkpoint {path} was trained with another architecture; differing config keys: "
            + "; ".join(diffs) + ". Use the checkpoint's settings (or another checkpoint)"
        )


def load_model_state(net: torch.nn.Module, state: dict, path: str | Path = "<checkpoint>") -> None:
    """``load_state_dict(strict=True)`` with a CheckpointError instead of a long RuntimeError."""
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()
        raise CheckpointError(
            f"checkpoint {path}: weights do not fit the network ({' '.join(first[:2])[:400]}); "
            f"the checkpoint comes from another architecture or a different decseg version"
        ) from None


def check_state_fits(net: torch.nn.Module, state: dict, weights_file: str | Path) -> None:
    """CheckpointError naming ``weights_file`` when its keys or shapes differ from the network's."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k} {got[k]} vs {expected[k]}" for k in expected if k in got and got[k] != expected[k]]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                 f"{len(shapes)} of other shape (e.g. {shapes[0]}, file vs network)" if shapes else ""]
        raise CheckpointError(
            f"{weights_file}: its tensors do not fit the network that config.json describes: "
            + "; ".join(p for p in parts if p) + ". The two files come from different exports: export them "
            f"again together with decseg export --checkpoint CKPT --hf DIR")


def load_model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """Build the network from the checkpoint's stored config and load its weights.

    Returns ``(net, cfg)`` with ``net`` in eval mode on ``device``. ``model.pretrained`` is
    forced to false: the weights come from the checkpoint, nothing is downloaded.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    cfg = stored_config(ckpt, path)
    return model_from_checkpoint(ckpt, cfg, path, device), cfg


def model_from_checkpoint(ckpt: dict, cfg: Config, path: str | Path = "<checkpoint>",
                          device: str | torch.device = "cpu") -> torch.nn.Module:
    """The network of a loaded checkpoint (``cfg``: its stored config), in eval mode on ``device``."""
    from decseg.models import build_model

    cfg.model.pretrained = False
    net = build_model(cfg, load_pretrained=False)
    if "weights_file" in ckpt:  # an export folder: name the safetensors file and what does not fit
        check_state_fits(net, ckpt["model"], ckpt["weights_file"])
    load_model_state(net, ckpt["model"], path)
    net.to(device).eval()
    return net
