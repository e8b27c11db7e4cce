"""ONNX export with the transformer encoders: the exported graph equals PyTorch in onnxruntime."""
from __future__ import annotations

import pytest
import torch

import decseg
from decseg.cli.main import main
from decseg.inference.checkpoint import load_model_from_checkpoint, save_checkpoint
from decseg.models import build_model

SIZE = 64


# One hierarchical and one plain-ViT family (swin_tiny_patch4_window7_224 exports too, in ~20 s).
@pytest.mark.parametrize("encoder", ["pvt_v2_b0", "vit_small_patch14_dinov2"])
def test_transformer_encoder_exports_and_matches_in_onnxruntime(encoder, tmp_path):
    import onnxruntime as ort

    cfg = decseg.load_config(None, [f"model.encoder={encoder}", "model.pretrained=false", f"data.size={SIZE}"])
    torch.manual_seed(0)
    ckpt = tmp_path / "net.pt"
    save_checkpoint(ckpt, model_state=build_model(cfg).state_dict(), config=cfg, iteration=0, best_val_dice=None)
    onnx_path = tmp_path / "net.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(onnx_path)]) == 0
    net, _ = load_model_from_checkpoint(ckpt)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))  # not the export batch
    got = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    with torch.inference_mode():
        ref = net.predict_logits(x)
    assert got.shape == (3, 2, SIZE, SIZE)
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3 * max(1.0, float(ref.abs().max())))
