"""One training iteration, set up and run the same way by ``decseg train`` and ``decseg benchmark``.

``build_training`` turns a config into the trained objects (network, method, optimizer) with
the run's execution settings resolved (precision, memory format, weight-gradient kernel,
optimizer-in-backward); ``TrainStep`` runs an iteration's arithmetic on them. The trainer adds
data, the non-finite check, logging and checkpoints around it; the benchmark times it on
synthetic tensors. None of the execution settings changes the mathematics of the step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from decseg.config import Config
from decseg.methods import build_method
from decseg.train.optim import SGDInBackward, build_optimizer, resolve_in_backward
from decseg.train.schedule import poly_lr, set_lr
from decseg.errors import ConfigError
from decseg.accel.gemm_conv import release_weight_casts
from decseg.accel.malloc import configure_malloc


def amp_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None = full fp32)."""
    amp = cfg.train.amp
    if amp == "off":
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("train.amp=fp16 is unsupported on CPU (fp16 autocast and its GradScaler "
                              "need CUDA); use train.amp=bf16 or train.amp=off")
        return torch.float16
    return torch.bfloat16


def use_channels_last(setting: bool | str, device: torch.device, dtype: torch.dtype | None) -> bool:
    """``train.channels_last``: auto = channels_last on CUDA and for bf16/fp16 on CPU.

    On CPU in fp32, oneDNN's channels_last kernels made the paper model's step 1.29x slower than
    NCHW (docs/PERFORMANCE.md), while under bf16 channels_last is its fast path.
    """
    if setting == "auto":
        return device.type == "cuda" or dtype is not None
    return bool(setting)


def use_gemm_conv(cfg: Config, device: torch.device) -> bool:
    """``train.conv_weight_grad``: auto = the GEMM weight gradient on CPU (not under compile)."""
    choice = cfg.train.conv_weight_grad
    if choice == "auto":
        return device.type == "cpu" and not cfg.train.compile
    return choice == "gemm"


#: ``train.cpu_memory=auto`` bounds the memory of freed blocks under autocast from this many
#: trained parameters
BIG_MODEL_PARAMS = 100_000_000


def resolve_cpu_memory(setting: str, device: torch.device, n_params: int,
                       dtype: torch.dtype | None, cache_available: bool = True) -> str:
    """``train.cpu_memory`` for this run: ``cache``, ``return``, ``reuse`` or ``system``.

    auto, for models above ``BIG_MODEL_PARAMS`` under autocast: ``cache`` (decseg's CPU block
    cache), or ``return`` where the cache cannot be built. Measured (docs/PERFORMANCE.md, 2
    threads): the paper model in bf16 at 224, batch 4 peaks at 6.4 GiB with either, where
    ``reuse`` peaks at 7.7-8.4 GiB, which the memory target cannot afford; the cache removes most
    of ``return``'s ~4 M page faults per step (14.4-16.6 -> 8-9 s).

    auto otherwise: ``reuse``. In fp32 the paper model is faster keeping freed blocks in glibc's
    heap (25.0 -> 21.1 s and 28.4 -> 21.0 s per step against ``return`` at the same 9.1-9.2 GiB;
    the block cache peaks lower, 7.9 GiB, but its steps took 20-25 s against 16-19 s), and small
    models gain as much (resnet18 at 96 px, batch 4+4: fp32 2.25 -> 1.85 s, bf16 1.35 -> 0.95 s).
    """
    if device.type != "cpu":
        return "system"  # the CUDA caching allocator manages GPU memory
    if setting == "auto":
        if n_params > BIG_MODEL_PARAMS and dtype is not None:
            return "cache" if cache_available else "return"
        return "reuse"
    return setting


def apply_cpu_memory(setting: str, device: torch.device, n_params: int,
                     dtype: torch.dtype | None) -> tuple[str, list[str]]:
    """Resolve and apply ``train.cpu_memory``; returns the mode in force and notes for the log.

    An explicit ``cache`` that cannot be built is an error (with the compiler's reason); ``auto``
    falls back to glibc's modes with a note.
    """
    from decseg.accel import block_cache as cpu_cache

    notes = []
    mode = resolve_cpu_memory(setting, device, n_params, dtype)
    if mode == "cache":
        ok, why = cpu_cache.available()  # builds it on first use
        if not ok:
            if setting == "cache":
                raise ConfigError(f"train.cpu_memory=cache: {why}\nUse train.cpu_memory=auto "
                                  f"(falls back to glibc's malloc), return or reuse.")
            mode = resolve_cpu_memory(setting, device, n_params, dtype, cache_available=False)
            notes.append(f"note: decseg's CPU block cache is unavailable ({why.splitlines()[0]}); "
                         f"train.cpu_memory=auto uses glibc's {mode} mode")
    if mode != "system" and not configure_malloc(mode):
        notes.append(f"note: train.cpu_memory={mode} needs glibc's malloc; left as it is")
        mode = "system"
    return mode, notes


@dataclass
class TrainingParts:
    method: torch.nn.Module  # holds .net and the method's own modules (generators, teacher)
    optimizer: torch.optim.SGD
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None = fp32
    memory_format: torch.memory_format
    optimizer_in_backward: bool
    gemm_convs: int  # convolutions switched to the GEMM weight gradient
    cpu_memory: str = "system"  # mode applied (cache, return, reuse; system = untouched)
    notes: list[str] = field(default_factory=list)

    def settings(self) -> dict:
        """The resolved execution settings, for logs and benchmark JSON."""
        return {
            "amp_dtype": str(self.dtype).replace("torch.", "") if self.dtype else "fp32",
            "channels_last_resolved": self.memory_format is torch.channels_last,
            "optimizer_in_backward_resolved": self.optimizer_in_backward,
            "gemm_weight_grad_convs": self.gemm_convs,
            "cpu_memory_resolved": self.cpu_memory,
        }


def build_training(cfg: Config, device: torch.device, *, distributed: bool = False,
                   load_pretrained: bool = True) -> TrainingParts:
    """Network, method and optimizer on ``device`` with the run's execution settings.

    Seed the RNGs before calling: the initial weights come from them.
    """
    from decseg.models import build_model
    from decseg.accel.gemm_conv import use_gemm_weight_grad

    t = cfg.train
    dtype = amp_dtype(cfg, device)
    net = build_model(cfg, load_pretrained=load_pretrained)
    net.checkpointing = t.checkpointing
    gemm = use_gemm_weight_grad(net) if use_gemm_conv(cfg, device) else 0
    method = build_method(cfg, net)
    notes = []
    if distributed and t.sync_bn:
        if device.type == "cuda":
            method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
        else:
            notes.append("note: train.sync_bn needs CUDA (PyTorch's SyncBatchNorm is GPU-only); "
                         "each CPU process keeps its own BatchNorm statistics")
    memory_format = (torch.channels_last if use_channels_last(t.channels_last, device, dtype)
                     else torch.contiguous_format)
    method.to(device, memory_format=memory_format)
    method.on_device(device, memory_format)
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    in_backward = resolve_in_backward(
        t.optimizer_in_backward, distributed=distributed,
        fp16=dtype is torch.float16, compile=t.compile)
    n_params = sum(p.numel() for p in params)
    cpu_memory, memory_notes = apply_cpu_memory(t.cpu_memory, device, n_params, dtype)
    notes += memory_notes
    return TrainingParts(method, optimizer, device, dtype, memory_format, in_backward, gemm,
                         cpu_memory=cpu_memory, notes=notes)


class TrainStep:
    """An iteration's arithmetic: poly lr, autocast forward, backward, SGD, free the gradients.

    ``forward`` and ``update`` are separate so the trainer can check the loss (and agree across
    DDP ranks) before anything is changed. ``model`` is the method or its DDP wrapper.
    """

    def __init__(self, cfg: Config, parts: TrainingParts, model: torch.nn.Module | None = None):
        self.cfg = cfg
        self.parts = parts
        self.method = parts.method
        self.model = model if model is not None else parts.method
        self.optimizer = parts.optimizer
        self.scaler = torch.amp.GradScaler("cuda", enabled=parts.dtype is torch.float16)
        self.in_backward = SGDInBackward(parts.optimizer) if parts.optimizer_in_backward else None

    def set_lr(self, iteration: int) -> float:
        t = self.cfg.train
        lr = poly_lr(t.lr, iteration, t.iterations, t.poly_power)
        set_lr(self.optimizer, lr)
        return lr

    def forward(self, labeled: dict, unlabeled: dict | None, iteration: int) -> dict:
        dtype, device = self.parts.dtype, self.parts.device
        try:
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                return self.model(labeled, unlabeled, iteration)
        finally:
            # as autocast clears its cast cache on exit; backward casts again where needed
            if self.parts.gemm_convs:
                release_weight_casts(self.method)

    def update(self, loss: torch.Tensor, iteration: int) -> None:
        if self.in_backward is not None:
            self.in_backward.backward_and_step(loss)  # no scaler: refused with fp16
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        # Gradients are dead once applied: freeing them now, not before the next backward,
        # keeps them out of the next forward's peak (measured -0.64 GiB, paper model, 224/4).
        self.optimizer.zero_grad(set_to_none=True)
        self.method.after_step(iteration)

    def __call__(self, labeled: dict, unlabeled: dict | None, iteration: int) -> dict:
        """Set the lr, run forward and update; returns the detached losses."""
        self.set_lr(iteration)
        losses = self.forward(labeled, unlabeled, iteration)
        self.update(losses["loss"], iteration)
        return {k: v.detach() for k, v in losses.items()}
