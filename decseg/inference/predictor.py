"""Prediction maps from a trained network: batched, optional flip TTA and bf16, at original size.

The protocol is the paper's: resize each image to S, predict, take the argmax at S, resize the
label map back to the image's original size with nearest neighbour and save it as a 0/255 PNG.
``soft=True`` instead resizes the lesion probability bilinearly and saves it as 0-255.
Outputs go to a temp folder that is renamed at the end, so an interrupted run never leaves a
complete-looking prediction folder.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from decseg.config import Config
from decseg.errors import ConfigError, DataError, DecsegError
from decseg.io import atomic_dir

PRED_COLOUR = (255, 40, 40)  # predicted contour in the overlays
GT_COLOUR = (40, 230, 40)  # ground-truth contour, when the set has masks


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks the first GPU when there is one, else the CPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but no CUDA GPU is visible; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None


class Predictor:
    """Wraps a segmentation network for inference: softmax probabilities at S for a batch."""

    def __init__(self, net: torch.nn.Module, device: torch.device | str = "cpu",
                 tta: bool = False, amp: str = "off", channels_last: bool = True):
        if amp not in ("off", "bf16"):
            raise ConfigError(f"predict amp={amp!r} is not one of: off, bf16")
        self.device = torch.device(device)
        self.tta = tta
        self.amp = amp
        self.channels_last = channels_last
        self.net = net.to(self.device).eval()
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16)
                    if self.amp == "bf16" else contextlib.nullcontext())
        with autocast:
            return self.net.predict_logits(x).float()

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) in [0, 1] -> (B, K, S, S) float32 softmax; TTA averages x and hflip(x)."""
        x = images.to(self.device, non_blocking=True).float()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        probs = torch.softmax(self._logits(x), dim=1)
        if self.tta:
            flipped = torch.softmax(self._logits(torch.flip(x, dims=[3])), dim=1)
            probs = 0.5 * (probs + torch.flip(flipped, dims=[3]))
        return probs


def maps_at_original_size(probs: torch.Tensor, sizes: Sequence[tuple[int, int]],
                          soft: bool = False) -> list[np.ndarray]:
    """Per image, a uint8 (H, W) map at its original size.

    Binary: lesion = argmax is not background, taken at S and resized with nearest neighbour
    (``nearest-exact``: pixel centres, the same samples as PIL's NEAREST), values 0/255.
    Soft: P(lesion) = 1 - P(background), resized bilinearly, then scaled to 0-255.
    """
    maps = []
    for p, (h, w) in zip(probs, sizes):
        if soft:
            fg = (1.0 - p[0:1])[None]
            fg = F.interpolate(fg, size=(int(h), int(w)), mode="bilinear", align_corners=False)
            out = torch.round(fg[0, 0].clamp(0, 1) * 255)
        else:
            label = (p.argmax(dim=0) != 0).to(torch.uint8)[None, None]
            out = F.interpolate(label, size=(int(h), int(w)), mode="nearest-exact")[0, 0] * 255
        maps.append(out.to(torch.uint8).cpu().numpy())
    return maps


def contour(mask: np.ndarray, width: int) -> np.ndarray:
    """Boolean outline of ``mask``, ``width`` pixels thick, inside the object."""
    from scipy import ndimage

    mask = mask.astype(bool)
    inner = ndimage.binary_erosion(mask, iterations=max(1, width), border_value=0)
    return mask & ~inner


def overlay_image(image: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 image with the predicted outline (red) and, if given, the ground truth's (green)."""
    rgb = image[..., :3] if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, axis=-1)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    width = max(1, round(max(rgb.shape[:2]) / 200))  # visible at any image size
    if gt is not None:
        rgb[contour(gt, width)] = GT_COLOUR
    rgb[contour(pred > 127, width)] = PRED_COLOUR
    return rgb


@dataclass
class PredictSource:
    """One output set: its name and the dataset that yields its images."""

    name: str
    dataset: object


def sources_from_data(data_root: str | Path, cfg: Config) -> list[PredictSource]:
    """Every test set of a dataset in the layout (DATA/test/SET/images)."""
    from decseg.data import DatasetLayout, EvalDataset

    layout = DatasetLayout(data_root)
    sets = layout.test_sets()
    if not sets:
        raise DataError(f"{data_root}: the dataset has no test sets under test/SET/images; "
                        f"use --images DIR to predict a plain folder")
    return [PredictSource(name, EvalDataset(layout, name, cfg.data)) for name in sets]


def source_from_images(folder: str | Path, cfg: Config) -> PredictSource:
    """A plain folder of images becomes one set named after the folder."""
    from decseg.data import EvalDataset

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: --images must be a folder of images; it does not exist or is not a folder")
    # The data layer lists the folder: non-image files are errors that name them.
    return PredictSource(folder.resolve().name, EvalDataset(None, folder, cfg.data))


def _item_mask(masks, i: int) -> np.ndarray | None:
    """The i-th ground-truth mask of a collated batch as bool (H, W), or None if the set has none."""
    if masks is None:
        return None
    m = masks[i]
    if m is None:
        return None
    return np.asarray(m.cpu() if torch.is_tensor(m) else m).astype(bool)


def _save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def predict_sources(predictor: Predictor, sources: Iterable[PredictSource], out: str | Path, *,
                    soft: bool = False, overlay_out: str | Path | None = None,
                    batch_size: int = 8, num_workers: int = 0, overwrite: bool = False,
                    progress: Callable[[str, int], Callable[[int], None]] | None = None,
                    image_channels: int = 3) -> dict[str, int]:
    """Write ``out/SET/ID.png`` for every image of every source; returns images written per set.

    ``overlay_out`` (a folder beside ``out``, so the evaluator never reads overlays as
    predictions) receives ``SET/ID.png`` outline pictures. Both folders appear only when
    everything succeeded.
    """
    from decseg.data import eval_batches, read_image

    sources = list(sources)
    counts: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_dir(out, overwrite=overwrite))
        tmp_overlay = (stack.enter_context(atomic_dir(overlay_out, overwrite=overwrite))
                       if overlay_out is not None else None)
        # PNG encoding overlaps with the next batch's forward pass.
        writer = stack.enter_context(ThreadPoolExecutor(max_workers=2))
        pending = []
        for src in sources:
            set_dir = tmp / src.name
            set_dir.mkdir(parents=True, exist_ok=True)
            if tmp_overlay is not None:
                (tmp_overlay / src.name).mkdir(parents=True, exist_ok=True)
            step = progress(src.name, len(src.dataset)) if progress else None
            n = 0
            for batch in eval_batches(src.dataset, batch_size, num_workers, predictor.device.type == "cuda"):
                probs = predictor.probabilities(batch["image"])
                sizes = [tuple(int(v) for v in s) for s in batch["orig_size"]]
                maps = maps_at_original_size(probs, sizes, soft=soft)
                for i, (sid, m) in enumerate(zip(batch["id"], maps)):
                    pending.append(writer.submit(_save_png, set_dir / f"{sid}.png", m))
                    if tmp_overlay is not None:
                        image = read_image(batch["path"][i], image_channels)
                        gt_i = _item_mask(batch.get("mask"), i)
                        pending.append(writer.submit(_save_png, tmp_overlay / src.name / f"{sid}.png",
                                                     overlay_image(image, m, gt_i)))
                n += len(maps)
                if step:
                    step(len(maps))
                # Bound the queue (and the maps it holds) when writing is slower than predicting.
                while len(pending) > 64:
                    pending.pop(0).result()
            counts[src.name] = n
        for f in pending:
            f.result()  # re-raise any write error before the folders are published
    return counts


def overlay_folder(out: str | Path) -> Path:
    """Where ``--overlay`` pictures go: ``PRED_overlay`` beside ``PRED`` (never inside it)."""
    out = Path(out)
    return out.with_name(out.name + "_overlay")


def config_with_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """The checkpoint's config with ``key=value`` overrides; model keys must come from the checkpoint."""
    from decseg.config import config_from_dict, parse_override

    d = cfg.to_dict()
    for text in overrides or []:
        key, value = parse_override(text)
        if key.startswith("model.") or key in ("data.size", "data.channels", "data.classes"):
            raise ConfigError(f"--set {text}: {key} is fixed by the checkpoint it was trained with; "
                              f"drop this override")
        section, _, name = key.partition(".")
        d.setdefault(section, {})[name] = value
    return config_from_dict(d, source="--set").validate()


def tqdm_progress(desc_prefix: str = "predict"):
    """A ``progress`` callback for :func:`predict_sources` that shows one tqdm bar per set."""
    from tqdm.auto import tqdm

    bars = []

    def start(name: str, total: int):
        for b in bars:
            b.close()
        bar = tqdm(total=total, desc=f"{desc_prefix} {name}", unit="img", leave=True)
        bars.append(bar)

        def step(n: int) -> None:
            bar.update(n)
            if bar.n >= bar.total:
                bar.close()

        return step

    return start


def predict_checkpoint(checkpoint: str | Path, out: str | Path, *, data: str | Path | None = None,
                       images: str | Path | None = None, soft: bool = False, overlay: bool = False,
                       tta: bool | None = None, amp: str | None = None, batch_size: int | None = None,
                       device: str = "auto", overrides: Sequence[str] = (), num_workers: int | None = None,
                       overwrite: bool = False, progress=None) -> dict:
    """Everything ``decseg predict`` does; returns ``{"sets": {SET: n_images}, "out": ..., ...}``.

    Unset options (None) come from the checkpoint's ``predict.*`` config (after ``overrides``).
    """
    from decseg.train.checkpoint import load_model_from_checkpoint

    if (data is None) == (images is None):
        raise ConfigError("give exactly one of --data DATA (every test set) or --images DIR (a folder)")
    dev = resolve_device(device)
    net, ckpt_cfg = load_model_from_checkpoint(checkpoint, dev)
    cfg = config_with_overrides(ckpt_cfg, overrides)
    tta = cfg.predict.tta if tta is None else tta
    amp = cfg.predict.amp if amp is None else amp
    batch_size = cfg.predict.batch_size if batch_size is None else batch_size
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be >= 1")
    workers = cfg.data.num_workers if num_workers is None else num_workers
    if workers < 0:
        raise ConfigError(f"--workers {workers} must be >= 0")
    sources = sources_from_data(data, cfg) if data is not None else [source_from_images(images, cfg)]
    # inference: channels_last for "auto" too (fp32 NHWC and NCHW predicted equally fast at 352)
    predictor = Predictor(net, dev, tta=tta, amp=amp, channels_last=cfg.train.channels_last is not False)
    overlay_out = overlay_folder(out) if overlay else None
    counts = predict_sources(predictor, sources, out, soft=soft, overlay_out=overlay_out,
                             batch_size=batch_size, num_workers=workers, overwrite=overwrite,
                             progress=progress, image_channels=3)
    return {"out": str(out), "overlay": str(overlay_out) if overlay_out else None, "sets": counts,
            "device": str(dev), "tta": tta, "amp": amp, "soft": soft}


# -- ONNX export ---------------------------------------------------------------------------------

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
    from decseg.train.checkpoint import load_model_from_checkpoint

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
