"""Speed and memory measurement of real training steps and of inference.

The measured step is the one training runs: the configured model, generators and method
(``decseg.methods``), the trainer's optimizer and precision settings, on synthetic
tensors of the configured size and batch. Only data loading is left out, so the numbers
are the cost of the mathematics, not of JPEG decoding.

Peak memory:
- CUDA: ``torch.cuda.max_memory_allocated`` over warm-up and timed steps.
- CPU: the process's peak resident set size during the steps. ``ru_maxrss`` is exact
  (the kernel tracks it, short spikes included) but covers the whole process life; when it
  rose during the steps it is the peak of the steps. When it did not (an earlier, larger job
  in the same process), a sampling thread's maximum is used and ``peak_rss_exact`` is false.
  The CLI and the sweep run each configuration in a fresh process so the value is exact.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from decseg.accel.device import resolve_device
from decseg.config import Config
from decseg.errors import ConfigError

GB = 1024**3


# --------------------------------------------------------------------------- environment

def cpu_name() -> str:
    """The CPU model as ``lscpu`` names it (``model name`` in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    env = {
        "device": str(device),
        "torch": torch.__version__,
        "cpu_name": cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),  # e.g. glibc.malloc.hugetlb=1 (see PERFORMANCE.md)
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        env["gpu_name"] = torch.cuda.get_device_name(device)
    return env


# --------------------------------------------------------------------------- memory

def _rss_bytes() -> int:
    # /proc/self/statm is cheap and needs no psutil; its second field is resident pages
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import psutil

        return psutil.Process().memory_info().rss


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # Linux reports KiB, macOS bytes


class PeakMemory:
    """Peak memory over a block: CUDA allocator peak, or process RSS on CPU (see module doc)."""

    def __init__(self, device: torch.device, interval_s: float = 0.005, limit_gb: float | None = None):
        self.device = device
        self.interval_s = interval_s
        # Safety valve for shared machines: stop this process before the kernel's OOM killer
        # picks some other process (DECSEG_BENCH_MAX_RSS_GB or the limit_gb argument).
        env_limit = os.environ.get("DECSEG_BENCH_MAX_RSS_GB")
        limit = limit_gb if limit_gb is not None else (float(env_limit) if env_limit else None)
        self.limit_bytes = int(limit * GB) if limit else None
        self.sampled_peak = 0
        self.maxrss_before = self.maxrss_after = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.maxrss_before = _maxrss_bytes()
        self.sampled_peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = _rss_bytes()
            self.sampled_peak = max(self.sampled_peak, rss)
            if self.limit_bytes and rss > self.limit_bytes:
                print(f"benchmark stopped: resident memory {rss / GB:.1f} GB passed the limit of "
                      f"{self.limit_bytes / GB:.1f} GB (DECSEG_BENCH_MAX_RSS_GB); use a smaller size "
                      f"or batch, or raise the limit", file=sys.stderr, flush=True)
                os._exit(3)  # from a thread: the only way to stop the process at once

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sampled_peak = max(self.sampled_peak, _rss_bytes())
        self.maxrss_after = _maxrss_bytes()

    def result(self) -> dict:
        exact = self.maxrss_after > self.maxrss_before
        # both are lower bounds of the true peak; the kernel's counter misses nothing, while
        # page-granular accounting can put the last sample a few pages above it
        rss = max(self.maxrss_after, self.sampled_peak) if exact else self.sampled_peak
        out = {
            "peak_rss_gb": rss / GB,
            "peak_rss_exact": exact,
            "peak_rss_sampled_gb": self.sampled_peak / GB,
        }
        if self.device.type == "cuda":
            out["peak_gpu_gb"] = torch.cuda.max_memory_allocated(self.device) / GB
            out["peak_gpu_reserved_gb"] = torch.cuda.max_memory_reserved(self.device) / GB
        return out


# --------------------------------------------------------------------------- timing

@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)  # timed steps, after warm-up
    warmup_seconds: list[float] = field(default_factory=list)
    page_faults: list[int] = field(default_factory=list)  # the process's minor faults per timed step
    memory: dict = field(default_factory=dict)

    def summary(self) -> dict:
        s = self.seconds
        return {
            "step_seconds": statistics.median(s),
            "step_seconds_min": min(s),
            "step_seconds_mean": statistics.fmean(s),
            "step_seconds_all": s,
            "warmup_seconds_all": self.warmup_seconds,
            # fresh pages the kernel zeroed and mapped: what re-allocating freed memory costs
            "page_faults_per_step": int(statistics.median(self.page_faults)),
            **self.memory,
        }


def measure(step: Callable[[], object], steps: int, warmup: int, device: torch.device) -> Timing:
    """Run ``warmup`` then ``steps`` calls of ``step``; time each (synchronising CUDA) and track
    peak memory over all of them (warm-up included: the first steps allocate optimizer state)."""
    if steps < 1 or warmup < 0:
        raise ConfigError(f"benchmark needs --steps >= 1 and --warmup >= 0 (got {steps}, {warmup})")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    timing = Timing()
    with PeakMemory(device) as mem:
        for i in range(warmup + steps):
            sync()
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            step()
            sync()
            dt = time.perf_counter() - t0
            if i >= warmup:
                timing.page_faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
            (timing.warmup_seconds if i < warmup else timing.seconds).append(dt)
    timing.memory = mem.result()
    return timing


# --------------------------------------------------------------------------- synthetic data

def synthetic_batch(cfg: Config, batch: int, with_masks: bool, device: torch.device,
                    seed: int = 0, channels_last: bool = False) -> dict:
    """A batch shaped like TwoStreamLoader's: four views in [0, 1] and masks at S and s."""
    g = torch.Generator().manual_seed(seed)
    S, s, C = cfg.data.size, cfg.data.half_size, cfg.data.channels
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def img(size: int) -> torch.Tensor:
        return torch.rand(batch, C, size, size, generator=g).to(device, memory_format=fmt)

    out = {"image": img(S), "image_half": img(s), "image_p": img(S), "image_half_p": img(s),
           "id": [f"synthetic{i}" for i in range(batch)]}
    if with_masks:
        # blob-like masks rather than noise, so the Dice terms see realistic foreground fractions
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, S), torch.linspace(-1, 1, S), indexing="ij")
        centres = torch.rand(batch, 2, generator=g) - 0.5
        radius = 0.2 + 0.4 * torch.rand(batch, generator=g)
        d2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
        mask = (d2 < radius[:, None, None] ** 2).long()
        out["mask"] = mask.to(device)
        out["mask_half"] = torch.nn.functional.interpolate(
            mask[:, None].float(), size=(s, s), mode="nearest")[:, 0].long().to(device)
    return out


# --------------------------------------------------------------------------- precision

@contextmanager
def strict_fp32() -> Iterator[None]:
    """Disable TF32 / reduced-precision matmul so 'off' means IEEE fp32 on every backend."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
           torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old[:2]
        torch.set_float32_matmul_precision(old[2])


def config_echo(cfg: Config, device: torch.device) -> dict:
    from decseg.methods import method_class

    t = cfg.train
    unlabeled = t.batch_unlabeled if method_class(cfg).uses_unlabeled(cfg) else 0
    return {
        "size": cfg.data.size,
        "half_size": cfg.data.half_size,
        "batch_labeled": t.batch_labeled,
        "batch_unlabeled": unlabeled,
        "batch": t.batch_labeled + unlabeled,
        "method": t.method,
        "amp": t.amp,
        "channels_last": t.channels_last,
        "checkpointing": t.checkpointing,
        "compile": t.compile,
        "optimizer_in_backward": t.optimizer_in_backward,
        "conv_weight_grad": t.conv_weight_grad,
        "cpu_memory": t.cpu_memory,
        "encoder": cfg.model.encoder,
        "cfa": cfg.model.cfa, "sc": cfg.model.sc, "dcf": cfg.model.dcf,
        "spc": t.spc, "cc": t.cc, "semi": t.semi,
        **environment(device),
    }


# --------------------------------------------------------------------------- training step

@dataclass
class BenchStep:
    """The trainer's step (``decseg.train.step``) on fixed synthetic batches; ``step()`` runs it once."""

    step: Callable[[], dict]
    device: torch.device
    method: torch.nn.Module
    optimizer: torch.optim.Optimizer
    labeled: dict
    unlabeled: dict | None
    settings: dict = field(default_factory=dict)
    last_losses: dict = field(default_factory=dict)
    iteration: int = 0


def build_train_step(cfg: Config, device: torch.device | None = None, seed: int = 0,
                     adjust: Callable[[object], Callable[[dict, dict | None], None] | None] | None = None
                     ) -> BenchStep:
    """The project's training step exactly as ``decseg train`` builds and runs it
    (``build_training`` + ``TrainStep``: model, execution plan, method, SGD, GradScaler, compile,
    poly lr, autocast, backward, update, freed gradients, ``after_step``), minus data loading,
    logging, validation and checkpoints.

    ``adjust(parts)``: an experimental change to measure (benchmarks/levers.py), applied to the
    built ``TrainingParts`` before the step is assembled; it may return a callable run before
    each step with the step's batches. Without it, the step is exactly the trainer's.
    """
    from decseg.io import seed_everything
    from decseg.methods import check_method_config
    from decseg.train.step import TrainStep, build_training

    t = cfg.train
    device = device or resolve_device(t.device)
    check_method_config(cfg)
    seed_everything(seed)
    parts = build_training(cfg, device)
    before_step = adjust(parts) if adjust is not None else None
    method = parts.method
    if t.compile:
        method.net.compile()
    train_step = TrainStep(cfg, parts)
    method.train()
    semi = method.uses_unlabeled(cfg)
    labeled = synthetic_batch(cfg, t.batch_labeled, True, device, seed, parts.plan.channels_last)
    unlabeled = (synthetic_batch(cfg, t.batch_unlabeled, False, device, seed + 1, parts.plan.channels_last)
                 if semi else None)
    bs = BenchStep(lambda: {}, device, method, parts.optimizer, labeled, unlabeled, parts.settings())

    def step() -> dict:
        it = bs.iteration
        if before_step is not None:
            before_step(labeled, unlabeled)
        bs.last_losses = train_step(labeled, unlabeled, it)
        bs.iteration = it + 1
        return bs.last_losses

    bs.step = step
    return bs


def benchmark_train(cfg: Config, steps: int = 3, warmup: int = 1, device: torch.device | None = None,
                    seed: int = 0, adjust=None, profile: str = "project") -> dict:
    """Median seconds per training step after warm-up, and peak memory (see module doc)."""
    device = device or resolve_device(cfg.train.device)
    ts = build_train_step(cfg, device, seed, adjust)
    timing = measure(ts.step, steps, warmup, device)
    return {
        "kind": "train",
        "profile": profile,
        **timing.summary(),
        "steps": steps,
        "warmup": warmup,
        "loss": float(ts.last_losses["loss"]),
        **config_echo(cfg, device),
        **ts.settings,
        **_cpu_cache_summary(ts.settings),
    }


def _cpu_cache_summary(settings: dict) -> dict:
    """The block cache's counters after the run (train.cpu_memory=cache only), bytes as GiB."""
    if settings.get("cpu_memory_resolved") != "cache":
        return {}
    from decseg.accel import block_cache as cpu_cache

    c = cpu_cache.counters()
    return {"cpu_cache": {k: (v if k in ("hits", "misses") else round(v / 2**30, 3))
                          for k, v in c.items()}}


# --------------------------------------------------------------------------- inference

def benchmark_predict(cfg: Config, steps: int = 3, warmup: int = 1, device: torch.device | None = None,
                      channels_last: bool = True, agreement: bool = False, seed: int = 0) -> dict:
    """Images per second of the prediction path (``decseg predict``'s Predictor) at
    ``predict.batch_size``, with ``predict.amp`` and ``predict.tta``.

    ``agreement``: also run the same images through a strict-fp32 NCHW predictor and report the
    fraction of pixels whose argmax agrees (the cost of bf16 / channels_last on the maps).
    """
    from decseg.inference.predictor import Predictor
    from decseg.models import build_model
    from decseg.io import seed_everything

    device = device or resolve_device(cfg.train.device)
    batch_size, amp = cfg.predict.batch_size, cfg.predict.amp
    seed_everything(seed)
    net = build_model(cfg)
    predictor = Predictor(net, device=device, amp=amp, channels_last=channels_last,
                          tta=cfg.predict.tta)
    images = synthetic_images(cfg, batch_size, seed)
    timing = measure(lambda: predictor.probabilities(images), steps, warmup, device)
    median = statistics.median(timing.seconds)
    out = {
        "kind": "predict",
        "profile": "project",
        "images_per_second": batch_size / median,
        "batch_size": batch_size,
        **timing.summary(),
        "steps": steps,
        "warmup": warmup,
        "size": cfg.data.size,
        "amp": amp,
        "channels_last": channels_last,
        "tta": cfg.predict.tta,
        "encoder": cfg.model.encoder,
        **environment(device),
    }
    if agreement:
        with strict_fp32():
            probs = predictor.probabilities(images).argmax(1)
            reference = Predictor(predictor.net.to(memory_format=torch.contiguous_format), device=device,
                                  amp="off", channels_last=False, tta=cfg.predict.tta)
            ref = reference.probabilities(images).argmax(1)
        out["pixel_agreement_vs_fp32"] = float((probs == ref).float().mean())
    return out


def synthetic_images(cfg: Config, batch: int, seed: int = 0) -> torch.Tensor:
    """Lesion-like test images in [0, 1]: smooth background, a darker blob, mild noise.

    Structured images give the network's maps realistic regions, so the pixel agreement between
    precisions is measured on edges and areas like real data rather than on pure noise.
    """
    g = torch.Generator().manual_seed(seed)
    S, C = cfg.data.size, cfg.data.channels
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, S), torch.linspace(-1, 1, S), indexing="ij")
    base = 0.55 + 0.25 * torch.rand(batch, C, 1, 1, generator=g)
    shade = 0.15 * (xx + yy)[None, None]
    centres = torch.rand(batch, 2, generator=g) - 0.5
    radius = 0.15 + 0.35 * torch.rand(batch, generator=g)
    d2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    blob = torch.sigmoid((radius[:, None, None] ** 2 - d2) * 40)[:, None]
    noise = 0.03 * torch.randn(batch, C, S, S, generator=g)
    return (base + shade - 0.3 * blob + noise).clamp(0, 1)
