"""Training engine: trainer, methods, checkpoints, distributed helpers (layer 4)."""
