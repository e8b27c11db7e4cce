"""Every method at K = 4 classes: its losses on a real batch of a 4-class dataset are finite,
gradients reach the network, pseudo-labels are class indices 0..3, and a 2-iteration training
run writes finite losses and a validation Dice."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from decseg import build_model, load_config
from decseg.labels import write_label_png
from decseg.methods import METHOD_CLASSES, build_method
from decseg.train.trainer import Trainer

K = 4
METHODS = ("decseg", "supervised", "meanteacher", "fixmatch", "unimatch", "cps", "bcp")
#: modules whose pseudo_labels() a method calls (wrapped to see the labels it makes)
PSEUDO = {"fixmatch": "decseg.methods.fixmatch", "unimatch": "decseg.methods.unimatch",
          "bcp": "decseg.methods.bcp"}


def _labels(h: int, w: int, i: int) -> np.ndarray:
    lab = np.zeros((h, w), np.uint8)
    lab[4 + i % 5: h // 2, 4: w // 2] = 1
    lab[h // 2: h - 4, 6: w // 2 + i % 7] = 2
    lab[6: h - 6, w // 2 + 3: w - 4] = 3
    return lab


def write_k4_layout(root: Path, n_train: int = 8, n_val: int = 2, h: int = 48, w: int = 56) -> Path:
    """A 4-class dataset in the layout: RGB PNG images, palette PNG index masks, splits, yaml."""
    rng = np.random.default_rng(7)
    ids = {"train": [f"t{i}" for i in range(n_train)], "val": [f"v{i}" for i in range(n_val)]}
    for split, names in ids.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i, name in enumerate(names):
            lab = _labels(h, w, i + (100 if split == "val" else 0))
            colour = np.array([[20, 20, 20], [200, 60, 60], [60, 200, 60], [60, 60, 200]], np.uint8)[lab]
            noise = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
            Image.fromarray(colour + noise).save(root / split / "images" / f"{name}.png")
            write_label_png(root / split / "masks" / f"{name}.png", lab, K)
    (root / "splits").mkdir()
    (root / "splits" / "labeled.txt").write_text("\n".join(ids["train"][:4]) + "\n")
    (root / "splits" / "unlabeled.txt").write_text("\n".join(ids["train"][4:]) + "\n")
    (root / "dataset.yaml").write_text(yaml.safe_dump(
        {"name": "k4", "channels": 3, "classes": K, "size": 64,
         "class_names": ["background", "a", "b", "c"]}))
    return root


@pytest.fixture(scope="module")
def k4_layout(tmp_path_factory) -> Path:
    return write_k4_layout(tmp_path_factory.mktemp("k4") / "data")


def _overrides(tiny_overrides: list[str], method: str) -> list[str]:
    return tiny_overrides + [f"train.method={method}", f"data.classes={K}", "train.confidence_threshold=0"]


def _batch(cfg, data: Path):
    from decseg.data import DatasetLayout, TwoStreamLoader

    loader = TwoStreamLoader(DatasetLayout(data), cfg.data, cfg.train.batch_labeled,
                             cfg.train.batch_unlabeled, seed=0, semi=True)
    return next(iter(loader))


def test_every_method_is_covered():
    assert set(METHODS) == set(METHOD_CLASSES)


@pytest.mark.parametrize("method", METHODS)
def test_losses_at_four_classes(k4_layout, tiny_overrides, method, monkeypatch):
    import importlib

    seen: list[torch.Tensor] = []
    if method in PSEUDO:
        module = importlib.import_module(PSEUDO[method])
        real = module.pseudo_labels

        def recording(logits):
            conf, label = real(logits)
            seen.append(label)
            return conf, label

        monkeypatch.setattr(module, "pseudo_labels", recording)
    cfg = load_config(None, _overrides(tiny_overrides, method))
    torch.manual_seed(0)
    m = build_method(cfg, build_model(cfg))
    lab, unl = _batch(cfg, k4_layout)
    assert lab["mask"].dtype == torch.long and int(lab["mask"].max()) == K - 1
    m.train()
    losses, visuals = m(lab, unl, iteration=3, with_visuals=True)
    assert set(losses) == {"loss", *type(m).terms}
    for key, value in losses.items():
        assert math.isfinite(float(value.detach())), key
    assert visuals["o1"].shape[1] == K
    losses["loss"].backward()
    params = [(n, p) for n, p in m.net.named_parameters() if p.requires_grad]
    missing = [n for n, p in params if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing[:3]}"
    assert sum(float(p.grad.abs().sum()) for _, p in params) > 0
    if method in PSEUDO:
        assert seen, "the method made no pseudo-labels"
        for label in seen:
            assert label.dtype == torch.long and 0 <= int(label.min()) and int(label.max()) <= K - 1
        if method == "bcp":  # the mixed label map shows ground truth and pseudo-labels together
            assert 0 <= int(visuals["mask"].min()) and int(visuals["mask"].max()) <= K - 1


@pytest.mark.parametrize("method", METHODS)
def test_two_iterations_at_four_classes(k4_layout, tiny_overrides, tmp_path, method):
    run = tmp_path / method
    pictures = ["train.image_every=2"] if method == "bcp" else []  # class maps in palette colours
    cfg = load_config(None, _overrides(tiny_overrides, method) + ["train.iterations=2", "train.val_every=2",
                                                                   *pictures])
    assert Trainer(cfg, k4_layout, run).run() == 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 2 and all(math.isfinite(r["loss"]) for r in steps)
    val = [r["val_dice"] for r in records if "val_dice" in r]
    assert len(val) == 1 and 0.0 <= val[0] <= 1.0
    assert (run / "checkpoints" / "best.pt").is_file()
    if pictures:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
        events.Reload()
        assert {"images/mask", "images/o1"} <= set(events.Tags()["images"])
        import io

        from decseg.labels import PALETTE

        shown = np.array(Image.open(io.BytesIO(events.Images("images/mask")[-1].encoded_image_string)))
        colours = {tuple(c) for c in shown.reshape(-1, shown.shape[-1])[:, :3].tolist()}
        assert shown.ndim == 3 and colours <= {tuple(c) for c in PALETTE[:K].tolist()} and len(colours) > 1
