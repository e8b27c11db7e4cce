"""Prediction maps from a trained network: batched, optional flip TTA and bf16, at original size.

The protocol is the paper's: resize each image to S, predict, take the argmax at S, resize the
label map back to the image's original size with nearest neighbour and save it as a 0/255 PNG.
``soft=True`` instead resizes the lesion probability bilinearly and saves it as 0-255.
A model of K > 2 classes saves the class indices as a palette PNG (``soft``: one 0-255 map per
class, ``ID_class{k}.png``). Outputs go to a temp folder that is renamed at the end, so an interrupted run never leaves a
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
from PIL import Image

from decseg.config import PREDICT_AMP, Config
from decseg.errors import ConfigError, DataError, naming
from decseg.accel.device import resolve_device
from decseg.inference.maps import (
    class_maps_at_original_size, labels_at_original_size, maps_at_original_size, overlay_classes,
    overlay_folder, overlay_image,
)
from decseg.labels import write_label_png
from decseg.io import atomic_dir



class Predictor:
    """Wraps a segmentation network for inference: softmax probabilities at S for a batch."""

    def __init__(self, net: torch.nn.Module, device: torch.device | str = "cpu",
                 tta: bool = False, amp: str = "off", channels_last: bool = True):
        if amp not in PREDICT_AMP:  # for callers that bypass the config
            raise ConfigError(f"predict.amp={amp!r} is not one of: {', '.join(PREDICT_AMP)}")
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


def _item_mask(masks, i: int, classes: int = 2) -> np.ndarray | None:
    """The i-th ground-truth mask of a collated batch as bool (H, W) (uint8 class indices when
    ``classes`` > 2), or None if the set has none."""
    if masks is None:
        return None
    m = masks[i]
    if m is None:
        return None
    return np.asarray(m.cpu() if torch.is_tensor(m) else m).astype(bool if classes == 2 else np.uint8)


def _save_png(path: Path, array: np.ndarray) -> None:
    with naming(path):  # a full disk names the file being written
        Image.fromarray(array).save(path)


def predict_sources(predictor: Predictor, sources: Iterable[PredictSource], out: str | Path, *,
                    soft: bool = False, overlay_out: str | Path | None = None,
                    batch_size: int = 8, num_workers: int = 0, overwrite: bool = False,
                    progress: Callable[[str, int], Callable[[int], None]] | None = None,
                    image_channels: int = 3, intensity: str = "auto") -> dict[str, int]:
    """Write ``out/SET/ID.png`` for every image of every source; returns images written per set.

    K = 2: 0/255 maps (``soft``: P(lesion) 0-255). K > 2: palette PNGs of the class indices
    (``soft``: ``out/SET/ID_class{k}.png``, P(class k) 0-255, for k = 0..K-1).

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
                classes = probs.shape[1]
                maps = (maps_at_original_size(probs, sizes, soft=soft) if classes == 2
                        else labels_at_original_size(probs, sizes))
                per_class = class_maps_at_original_size(probs, sizes) if soft and classes > 2 else None
                for i, (sid, m) in enumerate(zip(batch["id"], maps)):
                    if per_class is not None:  # K > 2 --soft: SET/ID_class{k}.png, k = 0..K-1
                        pending += [writer.submit(_save_png, set_dir / f"{sid}_class{k}.png", pk)
                                    for k, pk in enumerate(per_class[i])]
                    elif classes > 2:  # class indices in a palette PNG
                        pending.append(writer.submit(write_label_png, set_dir / f"{sid}.png", m, classes))
                    else:
                        pending.append(writer.submit(_save_png, set_dir / f"{sid}.png", m))
                    if tmp_overlay is not None:
                        image = read_image(batch["path"][i], image_channels, intensity=intensity)
                        gt_i = _item_mask(batch.get("mask"), i, classes)
                        picture = overlay_image(image, m, gt_i) if classes == 2 else overlay_classes(image, m, gt_i)
                        pending.append(writer.submit(_save_png, tmp_overlay / src.name / f"{sid}.png", picture))
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


class TqdmProgress:
    """A ``progress`` callback for :func:`predict_sources` that shows one tqdm bar per set.

    ``close()`` ends the open bar with its newline: call it when prediction stops, also on an
    error, so that the error message starts on a line of its own instead of after the bar.
    """

    def __init__(self, desc_prefix: str = "predict"):
        self.desc_prefix = desc_prefix
        self.bars: list = []

    def __call__(self, name: str, total: int) -> Callable[[int], None]:
        from tqdm.auto import tqdm

        self.close()
        bar = tqdm(total=total, desc=f"{self.desc_prefix} {name}", unit="img", leave=True)
        self.bars.append(bar)

        def step(n: int) -> None:
            bar.update(n)
            if bar.n >= bar.total:
                bar.close()

        return step

    def close(self) -> None:
        for b in self.bars:
            b.close()  # closing twice is a no-op


def tqdm_progress(desc_prefix: str = "predict") -> TqdmProgress:
    """One tqdm bar per set, as a ``progress`` callback (see :class:`TqdmProgress`)."""
    return TqdmProgress(desc_prefix)


def predict_checkpoint(checkpoint: str | Path, out: str | Path, *, data: str | Path | None = None,
                       images: str | Path | None = None, soft: bool = False, overlay: bool = False,
                       tta: bool | None = None, amp: str | None = None, batch_size: int | None = None,
                       device: str = "auto", overrides: Sequence[str] = (), num_workers: int | None = None,
                       overwrite: bool = False, progress=None) -> dict:
    """Everything ``decseg predict`` does; returns ``{"sets": {SET: n_images}, "out": ..., ...}``.

    Unset options (None) come from the checkpoint's ``predict.*`` config (after ``overrides``);
    set ones become overrides of their key, so ``Config.validate`` checks every option, and the
    input folders are listed, before the network is built.
    """
    from decseg.inference.checkpoint import load_checkpoint, model_from_checkpoint, stored_config

    if (data is None) == (images is None):
        raise ConfigError("give exactly one of --data DATA (every test set) or --images DIR (a folder)")
    options = {"predict.tta": tta, "predict.amp": amp, "predict.batch_size": batch_size,
               "data.num_workers": num_workers}
    overrides = [*overrides, *(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                               for k, v in options.items() if v is not None)]
    ckpt = load_checkpoint(checkpoint)
    stored = stored_config(ckpt, checkpoint)
    cfg = config_with_overrides(stored, overrides)
    sources = sources_from_data(data, cfg) if data is not None else [source_from_images(images, cfg)]
    dev = resolve_device(device, key="--device")
    net = model_from_checkpoint(ckpt, stored, checkpoint, dev)
    del ckpt  # the weights now live in the network
    tta, amp, batch_size = cfg.predict.tta, cfg.predict.amp, cfg.predict.batch_size
    workers = cfg.data.num_workers
    predictor = Predictor(net, dev, tta=tta, amp=amp, channels_last=cfg.predict.channels_last)
    overlay_out = overlay_folder(out) if overlay else None
    counts = predict_sources(predictor, sources, out, soft=soft, overlay_out=overlay_out,
                             batch_size=batch_size, num_workers=workers, overwrite=overwrite,
                             progress=progress, image_channels=3, intensity=cfg.data.intensity)
    return {"out": str(out), "overlay": str(overlay_out) if overlay_out else None, "sets": counts,
            "device": str(dev), "tta": tta, "amp": amp, "soft": soft,
            "classes": cfg.data.classes}


