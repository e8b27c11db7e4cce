"""Toolbox-exact evaluation of segmentation maps (the polyp community's MATLAB toolbox), and
per-class / per-volume Dice, IoU, HD95 (MONAI's and medpy's) and ASD for multi-class and volume sets.

Importable without torch: numpy, scipy, Pillow and medpy only. See docs/EVALUATION.md.
"""
from __future__ import annotations

from decseg.metrics.evaluate import (
    CURVES,
    EXTRA_KEYS,
    TOOLBOX_KEYS,
    EvaluationWarning,
    ImageRecord,
    aggregate,
    binary_mean_dice,
    dataset_classes,
    evaluate_folder,
    evaluate_image,
    evaluate_records,
    evaluate_set,
    evaluate_sets,
    find_sets,
)
from decseg.metrics.matlab import imresize, mapminmax01, rgb2gray, toolbox_thresholds

__all__ = [
    "CURVES", "EXTRA_KEYS", "TOOLBOX_KEYS", "EvaluationWarning", "ImageRecord", "aggregate",
    "binary_mean_dice", "dataset_classes", "evaluate_folder", "evaluate_image", "evaluate_records",
    "evaluate_set", "evaluate_sets",
    "find_sets", "imresize", "mapminmax01", "rgb2gray", "toolbox_thresholds",
]
