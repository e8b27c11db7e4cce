"""A checkpoint written in the earlier package layout (decseg 0.1, ``decseg/engine/``) loads.

``checkpoint_keys_v1.json`` was recorded from that layout: every state-dict key and shape of
the full DEC-Seg network on the tiny timm encoder, the method's own keys (the generators), and
the stored config as it was then (without keys added since, such as predict.channels_last).
The test writes a checkpoint of exactly that form, with the old writer's top-level fields, and
loads it with today's code.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from decseg.inference.checkpoint import FORMAT_VERSION, load_model_from_checkpoint
from decseg.methods import build_method

RECORDED = json.loads((Path(__file__).with_name("checkpoint_keys_v1.json")).read_text())


def _old_checkpoint(path: Path) -> dict:
    g = torch.Generator().manual_seed(0)
    def value(key: str, shape: list[int]) -> torch.Tensor:
        if key.endswith("num_batches_tracked"):
            return torch.tensor(5)
        if key.endswith("running_var"):
            return torch.rand(shape, generator=g) + 0.5
        return 0.05 * torch.randn(shape, generator=g)  # small: the random net's logits stay finite

    model = {k: value(k, shape) for k, shape in RECORDED["model"].items()}
    torch.save({"format_version": 1, "config": RECORDED["config"], "iteration": 5,
                "best_val_dice": 0.5, "model": model}, path)
    return model


def test_the_old_layouts_checkpoint_loads_with_the_same_weights(tmp_path):
    assert FORMAT_VERSION == 1
    written = _old_checkpoint(tmp_path / "best.pt")
    net, cfg = load_model_from_checkpoint(tmp_path / "best.pt")
    assert cfg.predict.channels_last is True  # a key the old config lacks takes its default
    state = net.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == RECORDED["model"]
    assert all(torch.equal(state[k], v) for k, v in written.items())
    with torch.inference_mode():
        logits = net.predict_logits(torch.rand(1, 3, 64, 64))
    assert logits.shape == (1, 2, 64, 64) and torch.isfinite(logits).all()


def test_the_methods_own_keys_are_unchanged():
    """last.pt keeps the method's non-network modules (the generators) under the same keys."""
    from decseg.config import config_from_dict
    from decseg.models import build_model

    cfg = config_from_dict(RECORDED["config"])
    method = build_method(cfg, build_model(cfg, load_pretrained=False))
    own = {k: list(v.shape) for k, v in method.state_dict().items() if not k.startswith("net.")}
    assert own == RECORDED["method"]
