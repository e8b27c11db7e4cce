"""The one device resolution: ``auto | cpu | cuda | cuda:N``, for training, prediction and benchmarks."""
from __future__ import annotations

import torch

from decseg.errors import ConfigError


def resolve_device(name: str | None = "auto", *, local_rank: int | None = None,
                   key: str = "train.device") -> torch.device:
    """``auto`` picks the first GPU when there is one, else the CPU.

    ``local_rank`` (under torchrun with several processes): plain ``cuda`` becomes
    ``cuda:LOCAL_RANK`` and is made the current device. ``key`` names the setting in messages.
    """
    name = "auto" if name in (None, "") else str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ConfigError(f"{key}={name!r} must be auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"{key}={name} but CUDA is not available here; use {key}=cpu or auto")
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{key}={name}: only {torch.cuda.device_count()} GPU(s) visible")
    if local_rank is not None:
        torch.cuda.set_device(device)
    return device
