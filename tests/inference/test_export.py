"""decseg export: ONNX of the inference path, checked with onnxruntime; the half-scale resize."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import decseg
from decseg.cli.main import main
from decseg.inference.checkpoint import load_model_from_checkpoint, save_checkpoint
from decseg.inference.export import HalfScale, InferenceGraph
from decseg.models import build_model, resize_image

SIZE = 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    # 352 -> 192 style non-integer ratio is covered below; the network uses the area default.
    cfg = decseg.load_config(None, ["model.encoder=resnet18", "model.pretrained=false", f"data.size={SIZE}"])
    torch.manual_seed(0)
    net = build_model(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model_state=net.state_dict(), config=cfg, iteration=0, best_val_dice=None)
    return path


@pytest.mark.parametrize("interpolation", ["area", "bilinear", "parity"])
@pytest.mark.parametrize("size,half", [(352, 192), (256, 128), (96, 64)])
def test_half_scale_matrices_equal_the_models_resize(interpolation, size, half):
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    expected = resize_image(x, (half, half), interpolation)
    assert torch.allclose(HalfScale(size, half, interpolation)(x), expected, atol=1e-5)


def test_export_matches_pytorch_in_onnxruntime_with_any_batch(checkpoint, tmp_path, capsys):
    import onnx
    import onnxruntime as ort

    path = tmp_path / "model.onnx"
    # a failed onnxruntime check (a tolerance below float rounding) publishes nothing
    assert main(["export", "--checkpoint", str(checkpoint), "--onnx", str(path), "--tolerance", "1e-15"]) == 2
    assert "not written" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    assert main(["export", "--checkpoint", str(checkpoint), "--onnx", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "max |diff|" in printed and str(path) in printed
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, SIZE, SIZE], "dynamic batch only"
    assert not [p for p in tmp_path.iterdir() if p.name != "model.onnx"], "no temp file left"

    net, cfg = load_model_from_checkpoint(checkpoint)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))  # batch 3: not the export batch
    got = session.run(None, {"image": x.numpy()})[0]
    with torch.inference_mode():
        ref = net.predict_logits(x).numpy()
    assert got.shape == (3, 2, SIZE, SIZE)
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, np.abs(ref).max()))


def test_inference_graph_without_dcf_returns_the_full_scale_decoder():
    cfg = decseg.load_config(None, ["model.encoder=resnet18", "model.pretrained=false", f"data.size={SIZE}",
                                    "model.dcf=false", "model.sc=false"])
    net = build_model(cfg).eval()
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.inference_mode():
        assert torch.equal(InferenceGraph(net, cfg, SIZE)(x), net.predict_logits(x))


def test_export_errors_are_one_line(checkpoint, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(checkpoint), "--onnx", str(tmp_path / "m.onnx"), "--size", "70"]) == 2
    assert "--size 70" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "missing.pt"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
