"""decseg: semi-supervised 2D medical image segmentation with DEC-Seg (Gu et al., PR 2025)."""
from __future__ import annotations

__version__ = "0.1.0"

from decseg.config import Config, load_config  # noqa: E402


def build_model(config: Config):
    """Build the DEC-Seg segmentation network described by ``config`` (see decseg.models)."""
    from decseg.models import build_model as _build

    return _build(config)


__all__ = ["Config", "load_config", "build_model", "__version__"]
