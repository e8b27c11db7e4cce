"""One training iteration, set up and run the same way by ``decseg train`` and ``decseg benchmark``.

``build_training`` turns a config into the trained objects (network, method, optimizer) and
applies the run's execution plan (``decseg.accel.plan``: precision, memory format,
weight-gradient kernel, optimizer-in-backward, CPU memory); ``TrainStep`` runs an iteration's
arithmetic on them. The trainer adds
data, the non-finite check, logging and checkpoints around it; the benchmark times it on
synthetic tensors. None of the execution settings changes the mathematics of the step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from decseg.accel.gemm_conv import release_weight_casts
from decseg.accel.optimizer_in_backward import SGDInBackward
from decseg.accel.plan import ExecutionPlan, plan_execution
from decseg.config import Config
from decseg.methods import build_method
from decseg.train.optim import build_optimizer
from decseg.train.schedule import poly_lr, set_lr


@dataclass
class TrainingParts:
    method: torch.nn.Module  # holds .net and the method's own modules (generators, teacher)
    optimizer: torch.optim.SGD
    plan: ExecutionPlan
    gemm_convs: int = 0  # convolutions switched to the GEMM weight gradient

    def settings(self) -> dict:
        """The resolved execution settings, for logs and benchmark JSON."""
        return {**self.plan.settings(), "gemm_weight_grad_convs": self.gemm_convs}


def build_training(cfg: Config, device: torch.device, *, distributed: bool = False,
                   load_pretrained: bool = True) -> TrainingParts:
    """Network, method and optimizer on ``device``, with the run's execution plan applied.

    Seed the RNGs before calling: the initial weights come from them.
    """
    from decseg.accel.gemm_conv import use_gemm_weight_grad
    from decseg.models import build_model

    t = cfg.train
    plan = plan_execution(t, device, distributed=distributed)
    net = build_model(cfg, load_pretrained=load_pretrained)
    net.use_activation_checkpointing(plan.activation_checkpointing)
    gemm = use_gemm_weight_grad(net) if plan.gemm_weight_grad else 0
    method = build_method(cfg, net)
    if plan.sync_bn:
        if device.type == "cuda":
            method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
        else:
            plan.notes.append("note: train.sync_bn needs CUDA (PyTorch's SyncBatchNorm is GPU-only); "
                              "each CPU process keeps its own BatchNorm statistics")
    method.to(device, memory_format=plan.memory_format)
    method.on_device(device, plan.memory_format)
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    plan.apply_memory(sum(p.numel() for p in params))
    return TrainingParts(method, optimizer, plan, gemm)


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
        self.plan = parts.plan
        self.scaler = torch.amp.GradScaler("cuda", enabled=parts.plan.dtype is torch.float16)
        self.in_backward = SGDInBackward(parts.optimizer) if parts.plan.optimizer_in_backward else None

    def set_lr(self, iteration: int) -> float:
        t = self.cfg.train
        lr = poly_lr(t.lr, iteration, t.iterations, t.poly_power)
        set_lr(self.optimizer, lr)
        return lr

    def forward(self, labeled: dict, unlabeled: dict | None, iteration: int, *,
                with_visuals: bool = False) -> tuple[dict, dict]:
        """``(losses, visuals)`` of the method under the plan's autocast."""
        dtype, device = self.plan.dtype, self.plan.device
        try:
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                return self.model(labeled, unlabeled, iteration, with_visuals=with_visuals)
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
        losses, _ = self.forward(labeled, unlabeled, iteration)
        self.update(losses["loss"], iteration)
        return {k: v.detach() for k, v in losses.items()}
