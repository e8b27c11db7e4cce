"""decseg: semi-supervised 2D medical image segmentation with DEC-Seg (Gu et al., PR 2025)."""
from __future__ import annotations

import os

__version__ = "0.1.0"

from decseg.config import Config, load_config  # noqa: E402


def build_model(config: Config):
    """Build the DEC-Seg segmentation network described by ``config`` (see decseg.models)."""
    from decseg.models import build_model as _build

    return _build(config)


def from_pretrained(source: str | os.PathLike, device: str = "cpu", *, revision: str | None = None,
                    cache_dir: str | os.PathLike | None = None):
    """A trained network from a ``decseg export --hf`` folder, a hub id ``OWNER/NAME`` or a ``.pt``.

    Returns ``(net, config)`` (a named tuple ``PretrainedModel``), ``net`` in eval mode on
    ``device``. See decseg.inference.hub.from_pretrained.
    """
    from decseg.inference.hub import from_pretrained as _from_pretrained

    return _from_pretrained(source, device, revision=revision, cache_dir=cache_dir)


__all__ = ["Config", "load_config", "build_model", "from_pretrained", "__version__"]
