"""The encoder names under their former module: the code lives in ``decseg.models.encoders``."""
from __future__ import annotations

from decseg.models.encoders import (KNOWN_GOOD, OFFICIAL_RES2NET_FILE, REDUCTIONS, CNNEncoder, Encoder,
                                    create_encoder, load_encoder_weights, offline_help)

__all__ = ["CNNEncoder", "Encoder", "KNOWN_GOOD", "OFFICIAL_RES2NET_FILE", "REDUCTIONS", "create_encoder",
           "load_encoder_weights", "offline_help"]
