"""DEC-Seg (Gu et al., Pattern Recognition 158, 110962, 2025): L = L_sup + lambda (L_sc + L_spc + L_cc).

One forward of the whole batch (labeled then unlabeled, concatenated, as the released code
does) gives (o1, o2, o3); a second forward of the jittered unlabeled views gives (p1, p2, p3).
The terms are the named functions of ``decseg.losses``. Switches: model.sc / model.dcf change
which outputs exist; train.spc, train.cc, train.semi switch the perturbed pass, the generators
and the unlabeled stream. A term that is switched off is reported as 0.
"""
from __future__ import annotations

import torch
from torch import nn

from decseg.config import Config
from decseg.losses import (
    cross_generative_consistency_loss, decseg_loss, perturbation_consistency_loss,
    scale_consistency_loss, supervised_loss,
)
from decseg.methods.base import Method
from decseg.methods.common import heads, prediction


class DECSegMethod(Method):
    terms = ("sup", "sc", "spc", "cc", "lambda")

    def __init__(self, cfg: Config, net: nn.Module, generators: nn.ModuleList | None = None):
        super().__init__(cfg, net)
        self.use_spc = bool(cfg.train.semi and cfg.train.spc)
        self.use_cc = bool(self.use_spc and cfg.train.cc)
        if self.use_cc:
            if generators is None:
                from decseg.models import build_generators

                generators = build_generators(cfg)
            self.generators = generators

    @classmethod
    def unlabeled_only_pass(cls, cfg: Config) -> str | None:
        t = cfg.train
        return "the perturbed pass (train.spc; or set train.spc=false)" if t.semi and t.spc else None

    def compute_losses(self, labeled, unlabeled, iteration):
        semi = unlabeled is not None
        nl = labeled["image"].shape[0]
        o1, o2, o3 = self.net(_cat(labeled, unlabeled, "image"), _cat(labeled, unlabeled, "image_half"))
        y = labeled["mask"]
        sup = supervised_loss(heads((o1, o2, o3), nl), [y, labeled["mask_half"], y])
        s1, s2, s3 = (_softmax(o) for o in (o1, o2, o3))
        sc_pairs = []
        if s2 is not None:
            sc_pairs.append((s1[:nl], s2[:nl]))
            if semi:
                sc_pairs.append((s1[nl:], s2[nl:]))

        zero = sup.new_zeros(())
        spc = cc = zero
        rec1 = rec2 = None
        if semi and self.use_spc:
            p1, p2, p3 = self.net(unlabeled["image_p"], unlabeled["image_half_p"])
            q1, q2, q3 = (_softmax(p) for p in (p1, p2, p3))
            if q2 is not None:
                sc_pairs.append((q1, q2))
            clean = [s[nl:] for s, q in zip((s1, s2, s3), (q1, q2, q3)) if q is not None]
            spc = perturbation_consistency_loss(clean, [q for q in (q1, q2, q3) if q is not None])
            if self.use_cc:
                # The generators read logits of the prediction output (o3, or o1 without DCF);
                # gradients flow into both the generators and the segmentation network.
                rec1 = self.generators[0](prediction((o1, o2, o3))[nl:])
                rec2 = self.generators[1](prediction((p1, p2, p3)))
                cc = cross_generative_consistency_loss(rec1, unlabeled["image_p"], rec2, unlabeled["image"])
        sc = scale_consistency_loss(sc_pairs) if sc_pairs else zero

        lam = self.lambda_weight(iteration)
        losses = {"loss": decseg_loss(sup, sc, spc, cc, lam), "sup": sup.detach(), "sc": sc.detach(),
                  "spc": spc.detach(), "cc": cc.detach(), "lambda": torch.tensor(lam)}
        maps = {"image": labeled["image"], "mask": y, "o1": o1, "o2": o2, "o3": o3,
                "unlabeled": unlabeled["image"] if semi else None, "rec1": rec1, "rec2": rec2}
        return losses, maps


def _softmax(logits: torch.Tensor | None) -> torch.Tensor | None:
    return None if logits is None else torch.softmax(logits.float(), 1)


def _cat(labeled: dict, unlabeled: dict | None, key: str) -> torch.Tensor:
    return labeled[key] if unlabeled is None else torch.cat([labeled[key], unlabeled[key]], 0)
