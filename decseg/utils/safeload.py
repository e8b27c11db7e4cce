"""``torch.load(weights_only=True)`` with one clean message per failure.

Checkpoints and weight files are untrusted input: a pickle payload is refused, and a damaged or
foreign file is named as such, instead of torch's multi-line advice to use weights_only=False.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def safe_torch_load(path: str | Path, error: type[Exception], what: str, hint: str,
                    map_location: Any = "cpu") -> Any:
    """Load ``path`` with ``weights_only=True``; every failure becomes ``error`` with one line.

    ``what`` names the file in the message (e.g. "checkpoint x.pt"); ``hint`` says what to do.
    """
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load raises many types for a damaged or foreign file
        text = _ANSI.sub("", str(e))
        found = _GLOBAL.search(text)
        if isinstance(e, pickle.UnpicklingError) and found:
            raise error(
                f"{what} carries a pickled Python object ({found.group(1)}) besides tensors; refusing to "
                f"load it, because that could run arbitrary code. {hint}"
            ) from None
        first = next((line.strip() for line in text.splitlines() if line.strip()), "end of file")
        raise error(
            f"{what} cannot be read as a PyTorch weights file: it is truncated or corrupt, or "
            f"another format ({type(e).__name__}: {first[:160]}). {hint}"
        ) from None
