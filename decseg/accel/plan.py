"""One execution plan per run: every lever that changes how a step runs, never what it computes.

``plan_execution(cfg.train, device, ...)`` resolves the ``auto`` settings once; ``train/``
applies the plan (``train.step.build_training``) and the benchmark reports it. The levers:

- precision: ``train.amp`` -> the autocast dtype (None = fp32);
- memory format: ``train.channels_last``;
- the GEMM weight gradient of wide 3x3 convolutions: ``train.conv_weight_grad`` (gemm_conv.py);
- SGD applied during backward: ``train.optimizer_in_backward`` (optimizer_in_backward.py);
- what malloc does with freed blocks on CPU: ``train.cpu_memory`` (malloc.py, block_cache.py);
- activation checkpointing of the widest fusion level: ``train.checkpointing``;
- ``train.compile`` and ``train.sync_bn``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from decseg.config import TrainConfig
from decseg.errors import ConfigError

#: ``train.cpu_memory=auto`` bounds the memory of freed blocks under autocast from this many
#: trained parameters
BIG_MODEL_PARAMS = 100_000_000


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None = full fp32)."""
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


def use_gemm_conv(choice: str, device: torch.device, compile: bool) -> bool:
    """``train.conv_weight_grad``: auto = the GEMM weight gradient on CPU (not under compile)."""
    if choice == "auto":
        return device.type == "cpu" and not compile
    return choice == "gemm"


def resolve_in_backward(setting: bool | str, *, distributed: bool, fp16: bool, compile: bool) -> bool:
    """``train.optimizer_in_backward`` (auto | true | false) for this run."""
    if setting == "auto":
        return not (distributed or fp16 or compile)
    if setting is True:
        blockers = [name for name, on in (("DDP (torchrun)", distributed), ("train.amp=fp16", fp16))
                    if on]
        if blockers:
            raise ConfigError(f"train.optimizer_in_backward=true cannot run with {' and '.join(blockers)}: "
                              f"the update would need every gradient first; use "
                              f"train.optimizer_in_backward=auto or false")
        return True
    return False


def resolve_cpu_memory(setting: str, device: torch.device, n_params: int,
                       dtype: torch.dtype | None, cache_available: bool = True) -> str:
    """``train.cpu_memory`` for this run: ``cache``, ``return``, ``reuse`` or ``system``.

    auto, for models above ``BIG_MODEL_PARAMS`` under autocast: ``cache`` (decseg's CPU block
    cache), or ``return`` where the cache cannot be built. Measured (docs/PERFORMANCE.md, 2
    threads): the paper model in bf16 at 224, batch 4 peaks at 6.4 GiB with either, where
    ``reuse`` peaks at 7.7-8.4 GiB; the cache removes most of ``return``'s ~4 M page faults per
    step (14.4-16.6 -> 8-9 s).

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


@dataclass
class ExecutionPlan:
    """The resolved levers of one run (see the module doc)."""

    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None = fp32
    memory_format: torch.memory_format
    gemm_weight_grad: bool
    optimizer_in_backward: bool
    cpu_memory: str  # requested mode, resolved to cache | return | reuse | system by apply_memory
    activation_checkpointing: bool
    compile: bool
    sync_bn: bool
    notes: list[str] = field(default_factory=list)

    @property
    def channels_last(self) -> bool:
        return self.memory_format is torch.channels_last

    def apply_memory(self, n_params: int) -> None:
        """Resolve and apply ``train.cpu_memory`` for a model of ``n_params`` trained parameters.

        An explicit ``cache`` that cannot be built is an error (with the compiler's reason);
        ``auto`` falls back to glibc's modes with a note.
        """
        from decseg.accel import block_cache
        from decseg.accel.malloc import configure_malloc

        setting = self.cpu_memory
        mode = resolve_cpu_memory(setting, self.device, n_params, self.dtype)
        if mode == "cache":
            ok, why = block_cache.available()  # builds it on first use
            if not ok:
                if setting == "cache":
                    raise ConfigError(f"train.cpu_memory=cache: {why}\nUse train.cpu_memory=auto "
                                      f"(falls back to glibc's malloc), return or reuse.")
                mode = resolve_cpu_memory(setting, self.device, n_params, self.dtype, cache_available=False)
                self.notes.append(f"note: decseg's CPU block cache is unavailable ({why.splitlines()[0]}); "
                                  f"train.cpu_memory=auto uses glibc's {mode} mode")
        if mode != "system" and not configure_malloc(mode):
            self.notes.append(f"note: train.cpu_memory={mode} needs glibc's malloc; left as it is")
            mode = "system"
        self.cpu_memory = mode

    def settings(self) -> dict:
        """The resolved levers, for the log line and benchmark JSON."""
        return {
            "amp_dtype": str(self.dtype).replace("torch.", "") if self.dtype else "fp32",
            "channels_last_resolved": self.channels_last,
            "optimizer_in_backward_resolved": self.optimizer_in_backward,
            "gemm_weight_grad_resolved": self.gemm_weight_grad,
            "cpu_memory_resolved": self.cpu_memory,
            "activation_checkpointing": self.activation_checkpointing,
        }


def plan_execution(t: TrainConfig, device: torch.device, *, distributed: bool = False) -> ExecutionPlan:
    """Resolve every ``auto`` lever of ``train.*`` for ``device`` (one place, once per run)."""
    dtype = amp_dtype(t.amp, device)
    memory_format = (torch.channels_last if use_channels_last(t.channels_last, device, dtype)
                     else torch.contiguous_format)
    return ExecutionPlan(
        device=device, dtype=dtype, memory_format=memory_format,
        gemm_weight_grad=use_gemm_conv(t.conv_weight_grad, device, t.compile),
        optimizer_in_backward=resolve_in_backward(t.optimizer_in_backward, distributed=distributed,
                                                  fp16=dtype is torch.float16, compile=t.compile),
        cpu_memory=t.cpu_memory, activation_checkpointing=bool(t.checkpointing),
        compile=bool(t.compile), sync_bn=bool(t.sync_bn and distributed))
