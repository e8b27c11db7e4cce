"""Losses: L_sup in ``supervised.py``, DEC-Seg's L_sc, L_spc, L_cc and the total in ``decseg.py``,
the baselines' pseudo-label losses in ``pseudo_label.py``.

Imports torch only (no model, method or training code).
"""
from decseg.losses.decseg import (
    cross_generative_consistency_loss, decseg_loss, mse, perturbation_consistency_loss,
    scale_consistency_loss, upsample_to,
)
from decseg.losses.pseudo_label import confident_cross_entropy, masked_ce_dice_loss, masked_dice_loss
from decseg.losses.rampup import sigmoid_rampup
from decseg.losses.supervised import ce_dice_loss, soft_dice_loss, supervised_loss

__all__ = ["ce_dice_loss", "soft_dice_loss", "supervised_loss", "scale_consistency_loss",
           "perturbation_consistency_loss", "cross_generative_consistency_loss", "decseg_loss",
           "confident_cross_entropy", "masked_ce_dice_loss", "masked_dice_loss", "mse", "upsample_to", "sigmoid_rampup"]
