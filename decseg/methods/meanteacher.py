"""Mean Teacher (Tarvainen & Valpola, 2017) on the same network.

The student is trained with L_sup on labeled images plus ``w(t) * MSE(softmax(student),
softmax(teacher))`` on unlabeled images, where the teacher (an EMA of the student, decay
``train.ema_decay``) sees a perturbed view: the colour-jittered images plus clipped Gaussian
noise. ``w(t) = train.consistency * sigmoid ramp-up`` over ``train.rampup`` iterations, or over
the first 40% of training when ``train.rampup`` is 0. Saved/validated weights are the student's.
"""
from __future__ import annotations

import torch
from torch import nn

from decseg.config import Config
from decseg.methods.ema import ModelEMA
from decseg.methods.base import Method
from decseg.methods.common import heads, prediction, require_semi
from decseg.losses import mse, sigmoid_rampup, supervised_loss

NOISE_STD, NOISE_CLIP = 0.1, 0.2


class MeanTeacherMethod(Method):
    terms = ("sup", "mt", "lambda")

    def __init__(self, cfg: Config, net: nn.Module):
        super().__init__(cfg, net)
        # a plain attribute (not a submodule): outside DDP and the optimizer
        object.__setattr__(self, "ema", ModelEMA(net, cfg.train.ema_decay))

    @classmethod
    def unlabeled_only_pass(cls, cfg: Config) -> str | None:
        return "the teacher's pass"

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        require_semi(cfg, "meanteacher")
        super().check_config(cfg)

    def lambda_weight(self, iteration: int) -> float:
        t = self.cfg.train
        length = t.rampup if t.rampup > 0 else max(1, int(0.4 * t.iterations))
        return t.consistency * sigmoid_rampup(iteration, length)

    def compute_losses(self, labeled, unlabeled, iteration):
        nl = labeled["image"].shape[0]
        x = torch.cat([labeled["image"], unlabeled["image"]], 0)
        xh = torch.cat([labeled["image_half"], unlabeled["image_half"]], 0)
        o1, o2, o3 = self.net(x, xh)
        y, yh = labeled["mask"], labeled["mask_half"]
        sup = supervised_loss(heads((o1, o2, o3), nl), [y, yh, y])

        teacher = self.ema.model
        teacher.train(self.training)
        with torch.no_grad():
            xt, xth = _noisy(unlabeled["image_p"]), _noisy(unlabeled["image_half_p"])
            t_pred = torch.softmax(prediction(teacher(xt, xth)).float(), 1)
        s_pred = torch.softmax(prediction((o1, o2, o3))[nl:].float(), 1)
        mt = mse(s_pred, t_pred)
        lam = self.lambda_weight(iteration)
        loss = sup + lam * mt
        losses = {"loss": loss, "sup": sup.detach(), "mt": mt.detach(), "lambda": torch.tensor(lam)}
        return losses, {"image": labeled["image"], "mask": y, "o1": o1, "o2": o2, "o3": o3,
                        "unlabeled": unlabeled["image"]}

    def after_step(self, iteration: int) -> None:
        self.ema.update(self.net, iteration)

    def on_device(self, device: torch.device, memory_format: torch.memory_format = torch.preserve_format) -> None:
        self.ema.model.to(device, memory_format=memory_format)

    def extra_state(self):
        return {"ema": self.ema.state_dict()}

    def load_extra_state(self, state):
        self.ema.load_state_dict(state["ema"])


def _noisy(x: torch.Tensor) -> torch.Tensor:
    return (x + (torch.randn_like(x) * NOISE_STD).clamp(-NOISE_CLIP, NOISE_CLIP)).clamp(0.0, 1.0)
