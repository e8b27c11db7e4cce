"""DEC-Seg's objective, one function per term of the paper (docs/METHOD.md, "Objective").

    L = L_sup + lambda * (L_sc + L_spc + L_cc)

- L_sup (``decseg.losses.supervised.supervised_loss``): CE + Dice on each output's labeled part.
- L_sc, scale consistency: the full-scale probabilities against the upsampled half-scale ones,
  for the labeled part, the unlabeled part and the perturbed pass.
- L_spc, perturbation consistency: each output on the unlabeled images against the same output
  on their colour-jittered views.
- L_cc, cross-generative consistency: each generator's reconstruction from one view's logits
  against the other view's image.

Every MSE is the mean over all elements in float32, so the terms stay exact under autocast.
A term whose inputs are switched off is not passed in; the method reports it as 0.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def upsample_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize with align_corners=True (the paper's ``Up``)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements, computed in float32."""
    return F.mse_loss(a.float(), b.float())


def _sum(terms: Sequence[torch.Tensor]) -> torch.Tensor:
    """The terms added left to right (the order fixes the float result)."""
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def scale_consistency_loss(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """L_sc = sum over (full, half) probability pairs of ``MSE(full, Up(half))``.

    DEC-Seg passes ``[(s1[l], s2[l]), (s1[u], s2[u]), (q1, q2)]``: labeled part, unlabeled part,
    perturbed pass; the pairs that exist in a run (no unlabeled data, no perturbed pass) only.
    """
    return _sum([mse(full, upsample_to(half.float(), full.shape[-2:])) for full, half in pairs])


def perturbation_consistency_loss(clean: Sequence[torch.Tensor],
                                  perturbed: Sequence[torch.Tensor]) -> torch.Tensor:
    """L_spc = sum over k of ``MSE(s_k[u], q_k)``: each output's probabilities on the unlabeled
    images against the same output on their jittered views (k = the outputs that exist)."""
    return _sum([mse(s, q) for s, q in zip(clean, perturbed)])


def cross_generative_consistency_loss(reconstruction_from_clean: torch.Tensor, perturbed_image: torch.Tensor,
                                      reconstruction_from_perturbed: torch.Tensor,
                                      clean_image: torch.Tensor) -> torch.Tensor:
    """L_cc = ``MSE(G1(o[u]), x_p[u]) + MSE(G2(p), x[u])``: G1 reads the clean view's logits and
    reconstructs the jittered image, G2 the other way round (o, p: the prediction outputs)."""
    return mse(reconstruction_from_clean, perturbed_image) + mse(reconstruction_from_perturbed, clean_image)


def decseg_loss(sup: torch.Tensor, sc: torch.Tensor, spc: torch.Tensor, cc: torch.Tensor,
                lam: float) -> torch.Tensor:
    """The total ``L_sup + lambda * (L_sc + L_spc + L_cc)``."""
    return sup + lam * (sc + spc + cc)
