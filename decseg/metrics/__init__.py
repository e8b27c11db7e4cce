"""Toolbox-exact evaluation of segmentation maps (the polyp community's MATLAB toolbox).

Importable without torch: numpy, scipy and Pillow only. See docs/EVALUATION.md.
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
    evaluate_folder,
    evaluate_image,
    evaluate_records,
    evaluate_sets,
    find_sets,
)
from decseg.metrics.matlab import imresize, mapminmax01, rgb2gray, toolbox_thresholds

__all__ = [
    "CURVES", "EXTRA_KEYS", "TOOLBOX_KEYS", "EvaluationWarning", "ImageRecord", "aggregate",
    "binary_mean_dice", "evaluate_folder", "evaluate_image", "evaluate_records", "evaluate_sets",
    "find_sets", "imresize", "mapminmax01", "rgb2gray", "toolbox_thresholds",
]
