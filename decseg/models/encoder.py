"""Re-exports of ``decseg.models.encoders`` for code that imports ``decseg.models.encoder``."""
from __future__ import annotations

from decseg.models.encoders import (KNOWN_GOOD, OFFICIAL_RES2NET_FILE, REDUCTIONS, CNNEncoder, Encoder,
                                    create_encoder, load_encoder_weights, offline_help)

__all__ = ["CNNEncoder", "Encoder", "KNOWN_GOOD", "OFFICIAL_RES2NET_FILE", "REDUCTIONS", "create_encoder",
           "load_encoder_weights", "offline_help"]
