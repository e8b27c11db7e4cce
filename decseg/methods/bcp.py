"""BCP, bidirectional copy-paste (Bai et al., "Bidirectional Copy-Paste for Semi-Supervised
Medical Image Segmentation", CVPR 2023), its self-training stage.

A mean teacher (an EMA of the student, decay ``train.ema_decay``, the paper's 0.99; held as
``MeanTeacherMethod`` holds it: outside DDP and the optimizer, in ``last.pt`` through
``extra_state``) predicts pseudo-labels ``p^u`` (argmax) of the unlabeled images. One box
``M`` of 2/3 of each side (``BOX_FRACTION``) at a random position, shared by the batch, mixes
the two streams both ways (Sec. 3.2, Eq. 2-3):

    X^in  = X^u_a outside M, X^l_a inside M      (the paper's "unlabeled" mixed image)
    X^out = X^l_b outside M, X^u_b inside M      (the "labeled" mixed image)

and the student is trained on both with the mixed targets (Eq. 4-6), ground truth where the
pixel came from a labeled image and the teacher's pseudo-label elsewhere:

    L = L_sup + alpha * L_unsup,   alpha = U_WEIGHT = 0.5 (the paper's weight of the unlabeled part)

with each part ``(CE + Dice) / 2`` over its own pixels (``losses.pseudo_label.masked_ce_dice_loss``:
CE averaged over those pixels, Dice over them batch-wise), summed over the two mixed images. The
labeled and unlabeled partners: pair ``a`` is sample i of each stream, pair ``b`` the batches
rolled by one sample, so each mixed image combines different images (BCP splits its batch in
halves instead); this needs ``train.batch_labeled == train.batch_unlabeled``. The two mixed
batches go through the student in one pass.

decseg's protocol: the mixed loss stands in for L_sup on every output the network has (o1 and
o3 at S; o2 at the half scale against the nearest-downsampled mixed targets), the teacher's
pseudo-labels come from its prediction output (o3, or o1 without DCF). Left out: BCP's
supervised pre-training stage (labeled-only copy-paste, whose weights initialise student and
teacher; here both start from the same initial network, and ModelEMA's warm-up lets the
teacher follow the student in the first steps) and its pseudo-label post-processing (the
largest connected component of each class, which assumes one structure per class).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from decseg.config import Config
from decseg.errors import ConfigError
from decseg.methods.augment import copy_paste_box, paste
from decseg.methods.common import prediction, pseudo_labels, require_semi
from decseg.methods.meanteacher import MeanTeacherMethod
from decseg.losses.pseudo_label import masked_ce_dice_loss

BOX_FRACTION = 2 / 3
U_WEIGHT = 0.5


def _at(t: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """A label or mask map (N, H, W) at ``size`` by nearest neighbour."""
    if t.shape[-2:] == size:
        return t
    return F.interpolate(t[:, None].float(), size=tuple(size), mode="nearest")[:, 0].to(t.dtype)


class BCPMethod(MeanTeacherMethod):
    terms = ("sup", "unsup")

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        require_semi(cfg, "bcp")
        t = cfg.train
        if t.batch_labeled != t.batch_unlabeled:
            raise ConfigError(f"train.method=bcp pastes each labeled image into an unlabeled one and back: "
                              f"set train.batch_labeled ({t.batch_labeled}) and train.batch_unlabeled "
                              f"({t.batch_unlabeled}) to the same number")
        super().check_config(cfg)

    def compute_losses(self, labeled, unlabeled, iteration):
        x_l, y_l, x_u = labeled["image"], labeled["mask"], unlabeled["image"]
        teacher = self.ema.model
        teacher.train(self.training)
        with torch.no_grad():
            _, p_u = pseudo_labels(prediction(teacher(x_u, unlabeled["image_half"])))
        box = copy_paste_box(*x_l.shape[-2:], BOX_FRACTION, device=x_l.device).expand_as(y_l)
        # pair a: sample i of each stream; pair b: the batches rolled by one
        x_lb, y_lb, x_ub, p_ub = (t.roll(1, 0) for t in (x_l, y_l, x_u, p_u))
        x_in, x_out = paste(x_u, x_l, box), paste(x_lb, x_ub, box)
        x = torch.cat([x_in, x_out])
        outs = self.net(x, self.net.make_half(x))
        # per mixed image: (ground truth, pseudo-label, where the ground truth holds)
        parts = [(y_l, p_u, box), (y_lb, p_ub, ~box)]
        n = x_l.shape[0]
        sup = unsup = x.new_zeros(())
        for o in (o for o in outs if o is not None):
            size = o.shape[-2:]
            for i, (gt, pl, from_labeled) in enumerate(parts):
                oi, gt, pl, m = o[i * n:(i + 1) * n], _at(gt, size), _at(pl, size), _at(from_labeled, size)
                sup = sup + masked_ce_dice_loss(oi, gt, m)
                unsup = unsup + masked_ce_dice_loss(oi, pl, ~m)
        loss = sup + U_WEIGHT * unsup
        o1, o2, o3 = outs
        return ({"loss": loss, "sup": sup.detach(), "unsup": unsup.detach()},
                {"image": x_in, "mask": paste(p_u, y_l, box), "o1": o1, "o2": o2, "o3": o3,
                 "unlabeled": x_u})
