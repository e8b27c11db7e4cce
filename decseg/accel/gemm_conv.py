"""Wide 3x3 convolutions whose weight gradient is computed as one matrix product.

Why by hand: on AVX-512/AMX CPUs, oneDNN's weight-gradient kernel for 3x3 convolutions with
>= 1024 channels at small spatial size (the 2048-channel fusion and decoder levels, 7x7 to
11x11 at S = 224..352) is 5-9x slower in bf16 and about 1.6x slower in fp32 than the same sum
written as shifted windows and one GEMM (measured with one thread: 2048 -> 2048 at 7x7, batch 4,
bf16 690-1120 ms vs 84-126 ms; fp32 320 ms vs 169 ms). Its forward and input-gradient kernels
are fast. PyTorch has no switch for the weight-gradient algorithm, so this module replaces only
that one: the forward pass and the input gradient still run through ``aten`` (oneDNN, cuDNN).

The mathematics is unchanged: the same convolution and the same gradient sum, accumulated in
fp32 inside the GEMM and returned in the compute dtype, as oneDNN's kernel does. Parameters,
state-dict keys and outputs are those of ``nn.Conv2d``. ``train.conv_weight_grad`` selects it
(``auto``: on CPU, where it pays; cuDNN's kernel is left alone on GPUs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _gemm_pays(dtype: torch.dtype, positions: int, in_channels: int) -> bool:
    """Whether the GEMM beats the library kernel for this call (CPU measurements, module doc).

    bf16/fp16: the GEMM wins up to 16x16 output positions, and at any size from 2048 input
    channels (2048 -> 1024 at 22x22: 850 vs 256 ms). fp32: it wins up to 12x12 positions and
    draws level beyond (1024 -> 1024 at 14x14: 146 vs 136 ms).
    """
    if dtype in (torch.bfloat16, torch.float16):
        return positions <= 256 or in_channels >= 2048
    return positions <= 144


def weight_grad_gemm(x: torch.Tensor, grad_out: torch.Tensor, kernel: tuple[int, int],
                     padding: tuple[int, int]) -> torch.Tensor:
    """d(loss)/d(weight) of a stride-1, dilation-1, groups-1 convolution, as one GEMM.

    Columns are the k*k shifted windows of the zero-padded input in NHWC order, so the product
    ``grad_out^T @ columns`` comes out as (co, kh, kw, ci): the channels_last weight layout.
    Returns (co, ci, kh, kw) in ``x``'s dtype.
    """
    n, ci, _, _ = x.shape
    co, ho, wo = grad_out.shape[1], grad_out.shape[2], grad_out.shape[3]
    kh, kw = kernel
    xp = F.pad(x, (padding[1], padding[1], padding[0], padding[0])).permute(0, 2, 3, 1)
    windows = [xp[:, i:i + ho, j:j + wo, :] for i in range(kh) for j in range(kw)]
    cols = torch.stack(windows, dim=3).reshape(n * ho * wo, kh * kw * ci)
    go = grad_out.permute(0, 2, 3, 1).reshape(n * ho * wo, co)
    return (go.t() @ cols).view(co, kh, kw, ci).permute(0, 3, 1, 2)


class _GemmWeightGradConv(torch.autograd.Function):
    """conv2d(x, w_compute) with the library's forward and input gradient and a GEMM weight
    gradient. ``weight`` is the parameter ``w_compute`` was cast from (or ``w_compute`` itself)."""

    @staticmethod
    def forward(ctx, x, w_compute, bias, padding, use_gemm, weight):
        xc = x.to(w_compute.dtype)
        if w_compute is weight:
            ctx.save_for_backward(xc, w_compute)
            ctx.weight = None
        else:
            # Keep the parameter, not its low-precision cast: the cast is made again in
            # backward, so the wide layers' copies (0.6 GB for the paper model) are not held
            # from forward to backward. The parameter cannot change in between: its update
            # comes after its gradient is complete, that is after this backward.
            ctx.save_for_backward(xc)
            ctx.weight = weight
        ctx.padding, ctx.use_gemm, ctx.has_bias = padding, use_gemm, bias is not None
        ctx.x_dtype, ctx.w_dtype = x.dtype, w_compute.dtype
        with torch.autocast(x.device.type, enabled=False):
            b = None if bias is None else bias.to(w_compute.dtype)
            return F.conv2d(xc, w_compute, b, padding=padding)

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.weight is None:
            xc, wc = ctx.saved_tensors
        else:
            (xc,) = ctx.saved_tensors
            wc = ctx.weight.detach().to(ctx.w_dtype)
        go = grad_out.to(wc.dtype)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n_positions = go.shape[2] * go.shape[3]
        gemm = ctx.use_gemm(wc.dtype, n_positions, xc.shape[1]) if need_w else False
        gi = gw = None
        if need_x or (need_w and not gemm):
            gi, gw, _ = torch.ops.aten.convolution_backward(
                go, xc, wc, None, [1, 1], list(ctx.padding), [1, 1], False, [0, 0], 1,
                [need_x, need_w and not gemm, False])
        if need_w and gemm:
            gw = weight_grad_gemm(xc, go, tuple(wc.shape[2:]), ctx.padding)
        gi = None if gi is None else gi.to(ctx.x_dtype)
        # the weight gradient stays in the compute dtype, as the library kernel's does: under
        # autocast the contributions of the step's calls are summed at the shared cast (in
        # bf16, 0.6 GB less held than fp32), which then converts the sum to fp32
        gb = go.sum((0, 2, 3)).to(ctx.w_dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gi, gw, gb, None, None, None


class GemmWeightGradConv2d(nn.Conv2d):
    """``nn.Conv2d`` (3x3-like, stride 1, dilation 1, groups 1) whose training backward computes
    the weight gradient as one GEMM where that is faster (``_gemm_pays``).

    Without gradients (evaluation, export) it is exactly ``nn.Conv2d.forward``. Under autocast
    the weight is cast once per optimizer step, with gradient tracking, and every call of the
    step (both scales, clean and perturbed passes) uses that one cast, as autocast's own cast
    cache does: their weight-gradient contributions meet there. The cast is held until
    ``release_weight_casts`` (the trainer calls it after each forward) or until the weight
    changes; backward casts again instead of keeping it.
    """

    #: per-call choice of the weight-gradient algorithm; swap for measurements
    use_gemm = staticmethod(_gemm_pays)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if not (torch.is_grad_enabled() and w.requires_grad) or isinstance(self.padding, str):
            return super().forward(x)
        dev = x.device.type
        if torch.is_autocast_enabled(dev):
            wc = self._cast_weight(torch.get_autocast_dtype(dev))
        elif x.dtype == w.dtype:
            wc = w
        else:
            return super().forward(x)
        return _GemmWeightGradConv.apply(x, wc, self.bias, self.padding, self.use_gemm, w)

    def _cast_weight(self, dtype: torch.dtype) -> torch.Tensor:
        # keyed on the weight's version, so an optimizer update or load_state_dict invalidates
        # it (writes through ``.data`` do not count versions: release the casts after them)
        w = self.weight
        key = (dtype, w._version, w.data_ptr())
        cached = self.__dict__.get("_weight_cast")
        if cached is not None and cached[0] == key:
            return cached[1]
        wc = w.to(dtype)  # differentiable: gradients flow back through the cast to the fp32 weight
        self.__dict__["_weight_cast"] = (key, wc)
        return wc

    def release_weight_cast(self) -> None:
        self.__dict__.pop("_weight_cast", None)


def release_weight_casts(module: nn.Module) -> None:
    """Drop the per-step weight casts of ``module``'s GEMM convolutions (after a forward)."""
    for m in module.modules():
        if isinstance(m, GemmWeightGradConv2d):
            m.release_weight_cast()


def eligible(m: nn.Module, min_channels: int) -> bool:
    return (type(m) is nn.Conv2d and m.stride == (1, 1) and m.dilation == (1, 1) and m.groups == 1
            and not isinstance(m.padding, str) and m.padding_mode == "zeros" and m.kernel_size != (1, 1)
            and min(m.in_channels, m.out_channels) >= min_channels)


def use_gemm_weight_grad(module: nn.Module, min_channels: int = 1024) -> int:
    """Switch the wide convolutions of ``module`` (in place) to ``GemmWeightGradConv2d``.

    Applies to ``nn.Conv2d`` with stride 1, dilation 1, groups 1, zero padding, a kernel larger
    than 1x1 and at least ``min_channels`` input and output channels; below 1024 channels the
    library kernel is as fast or faster. Parameters, buffers and hooks stay the same objects, so
    this can run before or after the optimizer is built. Returns how many were switched.
    """
    count = 0
    for m in module.modules():
        if eligible(m, min_channels):
            m.__class__ = GemmWeightGradConv2d
            count += 1
    return count
