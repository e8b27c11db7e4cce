"""decseg predict: PNG maps at the original size, soft maps, overlays, TTA, errors, atomicity."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import decseg
from decseg.cli.main import main
from decseg.inference.checkpoint import save_checkpoint
from decseg.inference.maps import maps_at_original_size
from decseg.inference.predictor import Predictor
from decseg.models import build_model

SIZE = 64
ENCODER = "resnet18"

# (file name, mode, (H, W)): odd sizes, grey, RGBA and JPEG on purpose
IMAGES = [("rgb_wide.png", "RGB", (48, 80)), ("grey_tall.png", "L", (70, 50)),
          ("rgba_square.png", "RGBA", (64, 64)), ("photo.jpg", "RGB", (45, 90))]


def _centred_net(cfg):
    """A random-init network whose lesion-minus-background logit is centred and scaled on a
    reference image, so that predictions contain both classes and spread-out probabilities (a
    random head predicts one class with probabilities near 0.5)."""
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = net.predict_logits(x)[:, 1] - net.predict_logits(x)[:, 0]
    state = net.state_dict()
    bias_key = [k for k, v in state.items() if k.startswith("fusion.") and k.endswith(".bias")
                and v.shape == (cfg.data.classes,)][-1]
    weight_key = bias_key[: -len("bias")] + "weight"
    gain = 3.0 / float(diff.std())
    state[weight_key][1] = state[weight_key][0] + gain * (state[weight_key][1] - state[weight_key][0])
    state[bias_key][1] = state[bias_key][0] + gain * (state[bias_key][1] - state[bias_key][0] - float(diff.median()))
    net.load_state_dict(state)
    return net


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = decseg.load_config(None, [f"model.encoder={ENCODER}", "model.pretrained=false",
                                    f"data.size={SIZE}", "data.num_workers=0"])
    net = _centred_net(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model_state=net.state_dict(), config=cfg, iteration=0, best_val_dice=None)
    return path


@pytest.fixture()
def image_dir(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, mode, (h, w) in IMAGES:
        channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
        arr = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
        Image.fromarray(arr[..., 0] if channels == 1 else arr, mode=mode).save(folder / name)
    return folder


def _predict(*args):
    return main(["predict", *map(str, args), "--workers", "0"])


def test_binary_maps_are_0_255_at_original_size(checkpoint, image_dir, tmp_path):
    out = tmp_path / "pred"
    assert _predict("--checkpoint", checkpoint, "--images", image_dir, "--out", out, "--batch-size", 3) == 0
    seen = set()
    for name, _, (h, w) in IMAGES:
        png = out / "mixed" / f"{name.rsplit('.', 1)[0]}.png"
        img = Image.open(png)
        assert img.mode == "L"
        arr = np.asarray(img)
        assert arr.shape == (h, w)
        assert set(np.unique(arr)) <= {0, 255}
        seen |= set(np.unique(arr).tolist())
    assert seen == {0, 255}, "the centred test network should predict both classes somewhere"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixed", "pred"], "no temp or overlay folders left"


def test_soft_maps_follow_the_probability(checkpoint, image_dir, tmp_path):
    hard, soft = tmp_path / "hard", tmp_path / "soft"
    assert _predict("--checkpoint", checkpoint, "--images", image_dir, "--out", hard) == 0
    assert _predict("--checkpoint", checkpoint, "--images", image_dir, "--out", soft, "--soft") == 0
    name, _, (h, w) = IMAGES[0]
    stem = name.rsplit(".", 1)[0]
    s = np.asarray(Image.open(soft / "mixed" / f"{stem}.png"))
    b = np.asarray(Image.open(hard / "mixed" / f"{stem}.png"))
    assert s.shape == (h, w) and s.dtype == np.uint8
    assert len(np.unique(s)) > 2, "a probability map has more than two grey levels"
    # argmax of two classes == P(lesion) > 0.5; the maps differ only where resizing moved borders
    assert np.mean((s >= 128) == (b == 255)) > 0.9


def test_maps_at_original_size_resizes_labels_and_probabilities():
    probs = torch.zeros(1, 2, 4, 4)
    probs[0, 1, :, 2:] = 0.8  # right half is lesion
    probs[0, 0] = 1 - probs[0, 1]
    binary = maps_at_original_size(probs, [(2, 8)])[0]
    assert binary.shape == (2, 8)
    assert binary.tolist() == [[0, 0, 0, 0, 255, 255, 255, 255]] * 2
    soft = maps_at_original_size(probs, [(4, 4)], soft=True)[0]
    assert soft[:, :2].max() == 0 and soft[:, 2:].min() == 204  # P(lesion) 0 and round(0.8 * 255)


def test_overlay_goes_beside_the_predictions_and_evaluate_ignores_it(checkpoint, tmp_path):
    from decseg.data import generate_dataset
    from decseg.metrics import evaluate_sets

    data = generate_dataset(tmp_path / "data", n=4, size=SIZE, seed=3, labeled=0.5, n_val=0, n_test=3)
    out = tmp_path / "pred"
    assert _predict("--checkpoint", checkpoint, "--data", data, "--out", out, "--overlay") == 0
    assert sorted(p.name for p in (out / "synth-test").iterdir()) == [f"test_{i:04d}.png" for i in range(3)]
    overlay = tmp_path / "pred_overlay" / "synth-test" / "test_0000.png"
    pic = np.asarray(Image.open(overlay))
    assert pic.shape == (SIZE, SIZE, 3)
    image = np.asarray(Image.open(data / "test" / "synth-test" / "images" / "test_0000.png"))
    assert (pic != image).any(axis=-1).sum() > 0, "outlines were drawn"
    results = evaluate_sets(out, data / "test", workers=1)
    assert set(results) == {"synth-test"} and 0 <= results["synth-test"]["meanDic"] <= 1


def test_flip_tta_is_flip_equivariant_and_runs_from_the_cli(checkpoint, image_dir, tmp_path):
    from decseg.inference.checkpoint import load_model_from_checkpoint

    net, _ = load_model_from_checkpoint(checkpoint)
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    tta = Predictor(net, tta=True, channels_last=False)
    plain = Predictor(net, tta=False, channels_last=False)
    p = tta.probabilities(x)
    expected = 0.5 * (plain.probabilities(x) + torch.flip(plain.probabilities(torch.flip(x, [3])), [3]))
    assert torch.allclose(p, expected, atol=1e-5)
    assert torch.allclose(tta.probabilities(torch.flip(x, [3])), torch.flip(p, [3]), atol=1e-5)
    assert torch.allclose(p.sum(1), torch.ones(2, SIZE, SIZE), atol=1e-5)
    out = tmp_path / "tta"
    assert _predict("--checkpoint", checkpoint, "--images", image_dir, "--out", out, "--tta", "--amp", "bf16") == 0
    assert len(list((out / "mixed").glob("*.png"))) == len(IMAGES)


def test_unreadable_image_is_named_and_nothing_is_published(checkpoint, image_dir, tmp_path, capsys):
    (image_dir / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "pred"
    assert _predict("--checkpoint", checkpoint, "--images", image_dir, "--out", out) == 2
    err = capsys.readouterr().err
    assert "zz_broken.png" in err and "Traceback" not in err
    # the first images were predicted before the failure, yet no output folder appears
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pred")]


def test_bad_checkpoint_and_bad_arguments_are_one_line_errors(checkpoint, image_dir, tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(checkpoint.read_bytes()[:4096])  # a truncated download
    assert _predict("--checkpoint", junk, "--images", image_dir, "--out", tmp_path / "a") == 2
    assert "junk.pt" in capsys.readouterr().err
    assert _predict("--checkpoint", checkpoint, "--images", image_dir, "--out", tmp_path / "b",
                    "--set", "model.encoder=resnet34") == 2
    assert "model.encoder" in capsys.readouterr().err
    assert _predict("--checkpoint", checkpoint, "--images", tmp_path / "nowhere", "--out", tmp_path / "c") == 2
    assert "nowhere" in capsys.readouterr().err
