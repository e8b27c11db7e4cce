"""The weight of an unsupervised term over training."""
from __future__ import annotations

import math


def sigmoid_rampup(iteration: int, length: int) -> float:
    """The common ``exp(-5 (1 - t)^2)`` ramp-up from 0 to 1 over ``length`` iterations; 1 if length is 0."""
    if length <= 0:
        return 1.0
    t = min(max(iteration, 0), length) / length
    return math.exp(-5.0 * (1.0 - t) ** 2)
