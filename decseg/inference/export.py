"""ONNX export of the inference network, checked against PyTorch with onnxruntime."""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from decseg.config import Config
from decseg.errors import ConfigError, DecsegError, environment_error

# The lowest opset that exports this network: its bilinear upsampling with align_corners=True
# needs ONNX Resize (opset 11); opsets 7-10 fail inside the exporter.
MIN_OPSET = 11


def opset_range(dynamo: bool) -> tuple[int, int]:
    """(lowest, highest) ``--opset`` that the installed torch exports this network at.

    TorchScript exporter: MIN_OPSET to torch's ``ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET`` (20 in
    torch 2.9-2.14). Dynamo exporter: its own operator set (``TORCHLIB_OPSET``, 18) to
    ``ONNX_MAX_OPSET`` (23); below 18 it writes opset 18 whatever was asked, or fails to convert.
    """
    try:
        from torch.onnx import _constants as c

        script_max, any_max = c.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET, c.ONNX_MAX_OPSET
    except (ImportError, AttributeError):  # private names: fall back to torch 2.14's values
        script_max, any_max = 20, 23
    if not dynamo:
        return MIN_OPSET, script_max
    try:
        from torch.onnx._internal.exporter._constants import TORCHLIB_OPSET as dynamo_min
    except (ImportError, AttributeError):
        dynamo_min = 18
    return max(MIN_OPSET, dynamo_min), any_max


def check_opset(opset: int, dynamo: bool) -> None:
    """ConfigError naming ``--opset`` and the range when the installed torch cannot export at ``opset``."""
    lo, hi = opset_range(dynamo)
    if not lo <= opset <= hi:
        exporter = "dynamo (--dynamo)" if dynamo else "TorchScript"
        other = ("" if dynamo or opset < lo else
                 f"; for opsets up to {opset_range(True)[1]} add --dynamo")
        raise ConfigError(f"--opset {opset}: torch {torch.__version__.split('+')[0]}'s {exporter} exporter "
                          f"exports this network at opsets {lo} to {hi}; choose one of them{other}")


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
                opset: int | None = None, batch: int = 2, tolerance: float = 1e-3, seed: int = 0,
                dynamo: bool = False) -> dict:
    """Export the inference path to ONNX (dynamic batch axis) and check it with onnxruntime.

    ``opset``: default 17 (18, the dynamo exporter's own, with ``dynamo``); :func:`opset_range`
    gives the ones the installed torch supports.

    Checks, on a random input of ``batch`` images: the graph equals ``net.predict_logits`` in
    PyTorch, and onnxruntime equals PyTorch within ``tolerance`` times the logits' scale
    (max |logit|, at least 1). Raises CheckpointError / ConfigError on user mistakes and
    DecsegError if a check fails (then no file is written).
    """
    from decseg.inference.checkpoint import load_model_from_checkpoint

    if not tolerance > 0:
        raise ConfigError(f"--tolerance {tolerance} must be > 0")
    opset = (18 if dynamo else 17) if opset is None else int(opset)
    check_opset(opset, dynamo)
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
        with _one_line_failure(f"the {'dynamo' if dynamo else 'TorchScript'} exporter failed at "
                               f"opset {opset}", "try another --opset" + ("" if dynamo else " or --dynamo")):
            _onnx_export(graph, x[:1], tmp, opset, dynamo)
        with _one_line_failure("the exported file failed onnx's checker or onnxruntime",
                               "try another --opset, or report it"):
            onnx.checker.check_model(str(tmp))  # by path: also valid for files near the 2 GB limit
            checked["opset"] = next((o.version for o in onnx.load(str(tmp), load_external_data=False).opset_import
                                     if o.domain in ("", "ai.onnx")), opset)
            session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(session.run(["logits"], {"image": x.numpy()})[0])
        checked["diff"] = diff = float((got - ref).abs().max())
        if not diff <= tolerance * scale:
            raise DecsegError(f"onnxruntime differs from PyTorch by max |diff| {diff:.3g} (logit scale "
                              f"{scale:.3g}, tolerance {tolerance:g} x scale); the ONNX file was not written")

    atomic_write(onnx_path, write_and_check)
    return {"onnx": str(onnx_path), "size": size, "half_size": graph.half_scale.half, "opset": checked["opset"],
            "channels": cfg.data.channels, "classes": cfg.data.classes,
            "interpolation": cfg.data.interpolation, "max_abs_diff": checked["diff"], "logit_scale": scale,
            "graph_vs_predict_logits": graph_diff, "bytes": Path(onnx_path).stat().st_size,
            "exporter": "dynamo" if dynamo else "torchscript"}


@contextmanager
def _one_line_failure(what: str, todo: str) -> Iterator[None]:
    """Turn any failure in the block into one DecsegError line (``--debug`` shows the original).

    Decseg's own errors and the environment's (disk full, permissions, memory) pass unchanged.
    """
    try:
        yield
    except DecsegError:
        raise
    except Exception as e:
        if environment_error(e) is not None:
            raise
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
        raise DecsegError(f"{what} ({type(e).__name__}: {first[:300]}); {todo}") from e


@contextmanager
def _quiet_native_output() -> Iterator[None]:
    """Send what is written to file descriptor 1 (stdout) during the block to a dropped temp file.

    torch's TorchScript exporter logs the whole graph there (about 1,300 lines for the tiny test
    network) when it fails, from C++; the failure itself still propagates as an exception.
    Nothing else writes to stdout during an export (the dynamo exporter's progress goes to stderr).
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all: nothing to keep quiet
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            try:
                yield
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
    finally:
        os.close(saved)


def _onnx_export(graph: torch.nn.Module, example: torch.Tensor, path: Path, opset: int, dynamo: bool) -> None:
    """Write ``graph`` to ``path`` with a dynamic batch axis.

    Default: the TorchScript-based exporter (fast, no extra packages; deprecated in recent torch
    but working). ``dynamo=True``: torch.export-based (needs onnxscript; several times slower).
    """
    import warnings

    with torch.no_grad(), warnings.catch_warnings(), _quiet_native_output():
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
