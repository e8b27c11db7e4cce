"""DEC-Seg (DESIGN.md section 2): L = L_sup + lambda * (L_sc + L_spc + L_cc).

One forward of the whole batch (labeled then unlabeled, concatenated, as the released code
does) gives (o1, o2, o3); a second forward of the jittered unlabeled views gives (p1, p2, p3).
Switches: model.sc / model.dcf change which outputs exist; train.spc, train.cc, train.semi
switch the perturbed pass, the generators and the unlabeled stream. Off components stay 0.
"""
from __future__ import annotations

import torch
from torch import nn

from decseg.config import Config
from decseg.methods.base import Method
from decseg.errors import ConfigError
from decseg.losses import mse, scale_consistency, supervised_loss


class DECSegMethod(Method):
    name = "decseg"

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
    def check_config(cls, cfg: Config) -> None:
        super().check_config(cfg)
        t = cfg.train
        if t.semi and t.cc and not t.spc:
            raise ConfigError("train.cc=true needs train.spc=true (the generators read the perturbed pass); "
                              "set train.cc=false or train.spc=true")
        if t.semi and t.spc and t.batch_unlabeled < 2:
            raise ConfigError(
                f"train.batch_unlabeled={t.batch_unlabeled}: the perturbed pass (train.spc) sees only "
                f"the unlabeled part, and BatchNorm needs at least 2 samples. Use "
                f"train.batch_unlabeled>=2, or train.spc=false"
            )

    def compute_losses(self, labeled, unlabeled, iteration):
        semi = unlabeled is not None
        nl = labeled["image"].shape[0]
        x = _cat(labeled, unlabeled, "image")
        xh = _cat(labeled, unlabeled, "image_half")
        o1, o2, o3 = self.net(x, xh)
        y, yh = labeled["mask"], labeled["mask_half"]
        sup = supervised_loss([_head(o1, nl), _head(o2, nl), _head(o3, nl)], [y, yh, y])

        s1 = torch.softmax(o1.float(), 1)
        s2 = torch.softmax(o2.float(), 1) if o2 is not None else None
        s3 = torch.softmax(o3.float(), 1) if o3 is not None else None
        zero = sup.new_zeros(())
        sc = spc = cc = zero
        if s2 is not None:  # L_sc on the labeled part, then the unlabeled part
            sc = scale_consistency(s1[:nl], s2[:nl])
            if semi:
                sc = sc + scale_consistency(s1[nl:], s2[nl:])

        p1 = p2 = p3 = rec1 = rec2 = None
        if semi and self.use_spc:
            p1, p2, p3 = self.net(unlabeled["image_p"], unlabeled["image_half_p"])
            q1 = torch.softmax(p1.float(), 1)
            spc = mse(s1[nl:], q1)
            if p2 is not None:
                q2 = torch.softmax(p2.float(), 1)
                spc = spc + mse(s2[nl:], q2)
                sc = sc + scale_consistency(q1, q2)
            if p3 is not None:
                spc = spc + mse(s3[nl:], torch.softmax(p3.float(), 1))
            if self.use_cc:
                # The generators read logits of the prediction output (o3, or o1 without DCF);
                # gradients flow into both the generators and the segmentation network.
                pred_u = (o3 if o3 is not None else o1)[nl:]
                pred_p = p3 if p3 is not None else p1
                rec1 = self.generators[0](pred_u)
                rec2 = self.generators[1](pred_p)
                cc = mse(rec1, unlabeled["image_p"]) + mse(rec2, unlabeled["image"])

        lam = self.lambda_weight(iteration)
        loss = sup + lam * (sc + spc + cc)
        self._capture(image=labeled["image"], mask=y, o1=o1, o2=o2, o3=o3,
                      unlabeled=unlabeled["image"] if semi else None, rec1=rec1, rec2=rec2)
        return {"loss": loss, "sup": sup.detach(), "sc": sc.detach(), "spc": spc.detach(),
                "cc": cc.detach(), "lambda": torch.tensor(lam)}


def _cat(labeled: dict, unlabeled: dict | None, key: str) -> torch.Tensor:
    return labeled[key] if unlabeled is None else torch.cat([labeled[key], unlabeled[key]], 0)


def _head(t: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return None if t is None else t[:n]
