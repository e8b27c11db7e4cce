"""Supervised baseline: the same network trained on labeled batches only, L_sup only."""
from __future__ import annotations

from decseg.config import Config
from decseg.losses import supervised_loss
from decseg.methods.base import Method


class SupervisedMethod(Method):
    terms = ("sup",)

    @classmethod
    def uses_unlabeled(cls, cfg: Config) -> bool:
        return False

    def compute_losses(self, labeled, unlabeled, iteration):
        o1, o2, o3 = self.net(labeled["image"], labeled["image_half"])
        y = labeled["mask"]
        sup = supervised_loss([o1, o2, o3], [y, labeled["mask_half"], y])
        return ({"loss": sup, "sup": sup.detach()},
                {"image": labeled["image"], "mask": y, "o1": o1, "o2": o2, "o3": o3})
