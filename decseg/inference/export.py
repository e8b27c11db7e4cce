"""ONNX export of the inference network, checked against PyTorch with onnxruntime."""
from __future__ import annotations

from pathlib import Path

import torch

from decseg.config import Config
from decseg.errors import ConfigError, DecsegError


def resize_matrix(size: int, out: int, interpolation: str) -> torch.Tensor:
    """(out, size) matrix R such that resizing along one axis is ``R @ v``.

    Every ``data.interpolation`` (area, antialiased bilinear, nearest) resizes each axis
    independently and linearly, so the model's own resize applied to unit vectors gives its
    exact weights.
    """
    from decseg.models import resize_image

    # Channel j holds the unit vector e_j along H, in two identical columns: the width stays
    # unchanged (torch's antialiased resize mis-handles a width of 1, so not 1).
    eye = torch.eye(size)[:, :, None].repeat(1, 1, 2)[None]
    return resize_image(eye, (out, 2), interpolation)[0, :, :, 0].t().contiguous()


class HalfScale(torch.nn.Module):
    """The half-scale input as two constant matrix products, ``R x R^T``.

    The model resizes with ``F.interpolate`` (area = adaptive average pooling, antialiased
    bilinear, nearest-exact); the ONNX exporters reject adaptive pooling at non-integer ratios
    (352 -> 192) and antialiased resizing, while MatMul exports everywhere. The weights come
    from the model's own resize, and export_onnx checks the result against predict_logits.
    """

    def __init__(self, size: int, half: int, interpolation: str):
        super().__init__()
        self.size, self.half, self.interpolation = size, half, interpolation
        self.register_buffer("rows", resize_matrix(size, half, interpolation), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.rows, x), self.rows.t())


class InferenceGraph(torch.nn.Module):
    """image (B, C, S, S) in [0, 1] -> prediction logits (B, K, S, S): the fused output o3, or o1
    when DCF is off; the half-scale input is built inside the graph."""

    def __init__(self, net: torch.nn.Module, cfg: Config, size: int):
        super().__init__()
        from decseg.config import half_size

        self.net = net
        self.uses_half = bool(cfg.model.sc)
        self.half_scale = HalfScale(size, half_size(size), cfg.data.interpolation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_half = self.half_scale(x) if self.uses_half else None
        o1, _, o3 = self.net(x, x_half)
        return o3 if o3 is not None else o1


def export_onnx(checkpoint: str | Path, onnx_path: str | Path, *, size: int | None = None,
                opset: int = 17, batch: int = 2, tolerance: float = 1e-3, seed: int = 0,
                dynamo: bool = False) -> dict:
    """Export the inference path to ONNX (dynamic batch axis) and check it with onnxruntime.

    Checks, on a random input of ``batch`` images: the graph equals ``net.predict_logits`` in
    PyTorch, and onnxruntime equals PyTorch within ``tolerance`` times the logits' scale
    (max |logit|, at least 1). Raises CheckpointError / ConfigError on user mistakes and
    DecsegError if a check fails (then no file is written).
    """
    from decseg.inference.checkpoint import load_model_from_checkpoint

    if not tolerance > 0:
        raise ConfigError(f"--tolerance {tolerance} must be > 0")
    net, cfg = load_model_from_checkpoint(checkpoint, "cpu")
    size = cfg.data.size if size is None else int(size)
    if size <= 0 or size % 32:
        raise ConfigError(f"--size {size} must be a positive multiple of 32 (the encoder downsamples by 32)")
    graph = InferenceGraph(net, cfg, size).eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, cfg.data.channels, size, size, generator=gen)
    with torch.inference_mode():
        ref = net.predict_logits(x).float()
        ours = graph(x).float()
    scale = max(1.0, float(ref.abs().max()))
    graph_diff = float((ref - ours).abs().max())
    if graph_diff > 1e-4 * scale:  # the same float ops up to summation order
        raise DecsegError(f"the export graph differs from net.predict_logits by {graph_diff:.3g} "
                           f"(interpolation {cfg.data.interpolation!r}); please report this")

    import onnx
    import onnxruntime as ort

    from decseg.io import atomic_write

    checked: dict = {}

    def write_and_check(tmp: Path) -> None:
        # Runs on the temp file: a failed check removes it and nothing is published.
        _onnx_export(graph, x[:1], tmp, opset, dynamo)
        onnx.checker.check_model(str(tmp))  # by path: also valid for files near the 2 GB limit
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(["logits"], {"image": x.numpy()})[0])
        checked["diff"] = diff = float((got - ref).abs().max())
        if not diff <= tolerance * scale:
            raise DecsegError(f"onnxruntime differs from PyTorch by max |diff| {diff:.3g} (logit scale "
                              f"{scale:.3g}, tolerance {tolerance:g} x scale); the ONNX file was not written")

    atomic_write(onnx_path, write_and_check)
    return {"onnx": str(onnx_path), "size": size, "half_size": graph.half_scale.half, "opset": opset,
            "channels": cfg.data.channels, "classes": cfg.data.classes,
            "interpolation": cfg.data.interpolation, "max_abs_diff": checked["diff"], "logit_scale": scale,
            "graph_vs_predict_logits": graph_diff, "bytes": Path(onnx_path).stat().st_size,
            "exporter": "dynamo" if dynamo else "torchscript"}


def _onnx_export(graph: torch.nn.Module, example: torch.Tensor, path: Path, opset: int, dynamo: bool) -> None:
    """Write ``graph`` to ``path`` with a dynamic batch axis.

    Default: the TorchScript-based exporter (fast, no extra packages; deprecated in recent torch
    but working). ``dynamo=True``: torch.export-based (needs onnxscript; several times slower).
    """
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks in the models are constant at a fixed S; the tracer's notes on them are
        # noise, and so is the exporter's own deprecation notice.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if dynamo:
            program = torch.onnx.export(graph, (example,), dynamo=True, opset_version=opset,
                                        input_names=["image"], output_names=["logits"],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
            program.save(str(path))
        else:
            torch.onnx.export(graph, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                              do_constant_folding=True)
