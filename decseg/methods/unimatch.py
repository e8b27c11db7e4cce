"""UniMatch (Yang et al., "Revisiting Weak-to-Strong Consistency in Semi-Supervised Semantic
Segmentation", CVPR 2023), in the form of its released medical (ACDC) training script.

Loss (the paper's Eq. 5 with the medical script's weights and Dice criterion):

    loss = (loss_x + 0.25 * loss_u_s1 + 0.25 * loss_u_s2 + 0.5 * loss_u_w_fp) / 2

- ``loss_x``: decseg's L_sup on the labeled images: (CE + Dice)/2 of every output the network
  has (on the plain U-Net exactly UniMatch's ``(CE + Dice) / 2``).
- Pseudo-labels: the argmax of the weak view's prediction ``p^w`` (the same network, in the
  same training-mode pass as the labeled images, detached); pixels whose confidence is below
  ``train.confidence_threshold`` (UniMatch's ``conf_thresh`` 0.95) are ignored.
- ``loss_u_s1``, ``loss_u_s2``: Dice of the two strong views ``u_s1``, ``u_s2`` against the
  pseudo-label. Each strong view is ``augment.strong_colour`` of the weak image with a CutMix
  box (``augment.cutmix_boxes``, p 0.5) filled from a second unlabeled image under its own
  strong augmentation; inside the box the target is that image's pseudo-label, from the model
  in eval mode without gradient (UniMatch's ``pred_u_w_mix``).
- ``loss_u_w_fp``: Dice of the feature-perturbed prediction: the weak view's encoder features
  through channel dropout (p = 0.5, ``FP_DROPOUT``) and a second decoder pass
  (``DECSegNet.forward_feature_dropout``), against the weak pseudo-label.

Dice with ignored pixels (``masked_dice_loss``) is UniMatch's: per class
``1 - (2 sum(p t) + 1e-5) / (sum(p^2) + sum(t^2) + 1e-5)`` over the kept pixels, then the mean
over the classes; with no pixel kept it is exactly 0.

decseg's loader yields one unlabeled batch per step, so the "second unlabeled batch" of
UniMatch's ``trainloader_u_mix`` is this batch rolled by one sample (each image mixes with
its neighbour); it needs ``train.batch_unlabeled >= 2``. The semi-supervised terms use the
prediction output (o3, or o1 without DCF). UniMatch's ACDC schedule (SGD lr 0.01, momentum
0.9, weight decay 1e-4, poly 0.9) is decseg's default ``train.*``; its batch 12 + 12 is
``train.batch_labeled=12 train.batch_unlabeled=12``.
"""
from __future__ import annotations

import torch

from decseg.config import Config
from decseg.errors import ConfigError
from decseg.losses import supervised_loss
from decseg.losses.pseudo_label import masked_dice_loss
from decseg.methods.augment import cutmix_boxes, paste, strong_colour
from decseg.methods.base import Method
from decseg.methods.common import heads, prediction, pseudo_labels, require_semi

FP_DROPOUT = 0.5
W_S1, W_S2, W_FP = 0.25, 0.25, 0.5


class UniMatchMethod(Method):
    terms = ("sup", "u_s1", "u_s2", "u_fp", "confident")

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        require_semi(cfg, "unimatch")
        if cfg.train.batch_unlabeled < 2:
            raise ConfigError(f"train.batch_unlabeled={cfg.train.batch_unlabeled}: train.method=unimatch "
                              f"CutMixes each unlabeled image with another of its batch; use "
                              f"train.batch_unlabeled>=2")
        super().check_config(cfg)

    def compute_losses(self, labeled, unlabeled, iteration):
        tau = self.cfg.train.confidence_threshold
        nl = labeled["image"].shape[0]
        u_w, u_w_half = unlabeled["image"], unlabeled["image_half"]
        n, _, h, w = u_w.shape

        # The second unlabeled batch (the rolled batch) and its pseudo-labels, eval mode, no grad.
        with torch.no_grad():
            training = self.net.training
            self.net.eval()
            try:
                conf_mix, label_mix = pseudo_labels(prediction(self.net(u_w, u_w_half)))
            finally:
                self.net.train(training)
        u_mix, conf_mix, label_mix = (t.roll(1, 0) for t in (u_w, conf_mix, label_mix))

        boxes = [cutmix_boxes(n, h, w, device=u_w.device) for _ in range(2)]
        u_s = [paste(strong_colour(u_w), strong_colour(u_mix), box) for box in boxes]

        clean, perturbed = self.net.forward_feature_dropout(
            torch.cat([labeled["image"], u_w]), torch.cat([labeled["image_half"], u_w_half]), p=FP_DROPOUT)
        strong_in = torch.cat(u_s)
        pred_s1, pred_s2 = prediction(self.net(strong_in, self.net.make_half(strong_in))).chunk(2)

        y = labeled["mask"]
        sup = supervised_loss(heads(clean, nl), [y, labeled["mask_half"], y])
        conf_w, label_w = pseudo_labels(prediction(clean)[nl:])
        targets = [(paste(label_w, label_mix, box), paste(conf_w, conf_mix, box)) for box in boxes]
        u_s1, u_s2 = (masked_dice_loss(torch.softmax(p.float(), 1), label, conf >= tau)
                      for p, (label, conf) in zip((pred_s1, pred_s2), targets))
        u_fp = masked_dice_loss(torch.softmax(prediction(perturbed)[nl:].float(), 1), label_w, conf_w >= tau)
        loss = (sup + W_S1 * u_s1 + W_S2 * u_s2 + W_FP * u_fp) / 2
        losses = {"loss": loss, "sup": sup.detach(), "u_s1": u_s1.detach(), "u_s2": u_s2.detach(),
                  "u_fp": u_fp.detach(), "confident": (conf_w >= tau).float().mean()}
        o1, o2, o3 = heads(clean, nl)
        return losses, {"image": labeled["image"], "mask": y, "o1": o1, "o2": o2, "o3": o3,
                        "unlabeled": u_w, "strong1": u_s[0], "strong2": u_s[1]}
