"""CPS, cross pseudo supervision (Chen et al., "Semi-Supervised Semantic Segmentation with Cross
Pseudo Supervision", CVPR 2021).

Two networks of the same architecture, initialised differently, see the same images; each
one's argmax is the other's target (Sec. 3, Eq. 1-4):

    L = L_s + lambda * L_cps,    L_cps = CE(p1, argmax p2) + CE(p2, argmax p1)

over labeled and unlabeled images (the paper's L_cps^l + L_cps^u), without a confidence
threshold; the pseudo-labels carry no gradient (argmax). ``lambda = CPS_WEIGHT = 1.5``, the
paper's trade-off weight for Cityscapes (and PASCAL VOC); decseg keeps the paper's value rather
than tuning it for medical images. ``L_s`` is decseg's L_sup ((CE + Dice)/2 on every output
of each network) on both networks, where the paper uses CE: the supervised loss that all
decseg methods share. The cross term uses the prediction output (o3, or o1 without DCF).

The second network ``net2`` is built by ``decseg.models.build_model`` under the seed
``train.seed + NET2_SEED_OFFSET`` (the global RNG is left as it was); with ``model.pretrained``
both encoders start from the same pretrained weights and the rest differs, as with CPS's two
ImageNet-initialised backbones. ``net2`` is a registered submodule, so the optimizer, DDP and
``last.pt`` hold it; validation, ``best.pt`` and prediction use the first network ``net``.
The execution plan's per-network levers (GEMM weight gradient, activation checkpointing) are
applied to ``net`` only; ``net2`` computes the same mathematics with the library kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from decseg.config import Config
from decseg.losses import supervised_loss
from decseg.methods.base import Method
from decseg.methods.common import heads, prediction, require_semi

CPS_WEIGHT = 1.5
NET2_SEED_OFFSET = 1


class CPSMethod(Method):
    terms = ("sup", "sup2", "cps", "lambda")

    def __init__(self, cfg: Config, net: nn.Module, net2: nn.Module | None = None):
        super().__init__(cfg, net)
        if net2 is None:
            from decseg.models import build_model

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.train.seed + NET2_SEED_OFFSET)
                net2 = build_model(cfg)
        self.net2 = net2

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        require_semi(cfg, "cps")
        super().check_config(cfg)

    def compute_losses(self, labeled, unlabeled, iteration):
        nl = labeled["image"].shape[0]
        x = torch.cat([labeled["image"], unlabeled["image"]])
        x_half = torch.cat([labeled["image_half"], unlabeled["image_half"]])
        outs1, outs2 = self.net(x, x_half), self.net2(x, x_half)
        y = labeled["mask"]
        targets = [y, labeled["mask_half"], y]
        sup = supervised_loss(heads(outs1, nl), targets)
        sup2 = supervised_loss(heads(outs2, nl), targets)
        p1, p2 = prediction(outs1).float(), prediction(outs2).float()
        cps = (F.cross_entropy(p1, p2.detach().argmax(1)) + F.cross_entropy(p2, p1.detach().argmax(1)))
        loss = sup + sup2 + CPS_WEIGHT * cps
        losses = {"loss": loss, "sup": sup.detach(), "sup2": sup2.detach(), "cps": cps.detach(),
                  "lambda": torch.tensor(CPS_WEIGHT)}
        o1, o2, o3 = heads(outs1, nl)
        return losses, {"image": labeled["image"], "mask": y, "o1": o1, "o2": o2, "o3": o3,
                        "unlabeled": unlabeled["image"]}
