"""FixMatch (Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with Consistency and
Confidence", NeurIPS 2020), pixel-wise for segmentation.

The paper's unlabeled loss (Sec. 2.2, Eq. 4),

    l_u = 1 / (mu B) * sum_b 1(max(q_b) >= tau) * H(argmax(q_b), p_m(y | A(u_b))),

with ``q_b`` the (detached) prediction on the weak view and ``A(u_b)`` the strong view, is
taken per pixel: the cross-entropy of the strong view's prediction against the weak view's
argmax, over every unlabeled pixel, where pixels whose weak confidence is below
``tau = train.confidence_threshold`` (the paper's 0.95) count 0 (the mean runs over all
pixels, as in the paper's 1/(mu B)). The total is ``l_s + lambda_u * l_u`` with the paper's
``lambda_u = 1`` (``LAMBDA_U``).

What decseg does differently, and why:

- ``l_s`` is decseg's L_sup ((CE + Dice)/2 on every output the network has), the supervised
  loss all decseg methods share, instead of the paper's CE.
- The strong view is the weak image through UniMatch's photometric strong augmentations
  (``augment.strong_colour``: colour jitter, greyscale, Gaussian blur), which keep pixels
  aligned with the weak view's pseudo-label. FixMatch's RandAugment and Cutout (designed for
  classification) are not implemented.
- The weak view is the loader's ``image`` (flips/rotations with ``data.geometric_aug``).

One training-mode forward of ``[labeled, weak, strong]`` (BatchNorm sees all three, as in the
paper's code); the semi-supervised term uses the prediction output (o3, or o1 without DCF).
"""
from __future__ import annotations

import torch

from decseg.config import Config
from decseg.losses import supervised_loss
from decseg.losses.pseudo_label import confident_cross_entropy
from decseg.methods.augment import strong_colour
from decseg.methods.base import Method
from decseg.methods.common import heads, prediction, pseudo_labels, require_semi

LAMBDA_U = 1.0


class FixMatchMethod(Method):
    terms = ("sup", "unsup", "confident")

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        require_semi(cfg, "fixmatch")
        super().check_config(cfg)

    def compute_losses(self, labeled, unlabeled, iteration):
        nl, nu = labeled["image"].shape[0], unlabeled["image"].shape[0]
        weak = unlabeled["image"]
        strong = strong_colour(weak)
        x = torch.cat([labeled["image"], weak, strong])
        x_half = torch.cat([labeled["image_half"], unlabeled["image_half"], self.net.make_half(strong)])
        outs = self.net(x, x_half)  # a network without model.sc ignores x_half
        y = labeled["mask"]
        sup = supervised_loss(heads(outs, nl), [y, labeled["mask_half"], y])
        pred = prediction(outs)
        conf, label = pseudo_labels(pred[nl:nl + nu])
        keep = conf >= self.cfg.train.confidence_threshold
        unsup = confident_cross_entropy(pred[nl + nu:], label, keep)
        loss = sup + LAMBDA_U * unsup
        losses = {"loss": loss, "sup": sup.detach(), "unsup": unsup.detach(),
                  "confident": keep.float().mean()}
        o1, o2, o3 = heads(outs, nl)
        return losses, {"image": labeled["image"], "mask": y, "o1": o1, "o2": o2, "o3": o3,
                        "unlabeled": weak, "strong": strong}
