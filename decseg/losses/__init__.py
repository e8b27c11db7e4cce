"""Losses of DEC-Seg and the baselines (layer 3: imports no engine code)."""
from decseg.losses.consistency import mse, scale_consistency, sigmoid_rampup, upsample_to
from decseg.losses.supervised import ce_dice_loss, soft_dice_loss, supervised_loss

__all__ = ["ce_dice_loss", "soft_dice_loss", "supervised_loss", "mse", "scale_consistency",
           "sigmoid_rampup", "upsample_to"]
