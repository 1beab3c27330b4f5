"""The learning-rate multiplier the backbones share: warmup, a decay planned over a horizon, a floor after it.

With a floor, the schedule does not end training: the steps after the decay keep training at the floor, and
early stopping on validation decides when to stop (TIGER's ``--decay-epochs``/``--min-lr-ratio``; LC-Rec's too).
"""

from __future__ import annotations

import math


def lr_multiplier(step: int, warmup: int, total: int, shape: str = "linear", floor: float = 0.0) -> float:
    """The multiplier of the peak learning rate at optimizer step ``step``: linear warmup over ``warmup`` steps,
    then ``shape`` (linear or cosine decay reaching zero at step ``total``, or constant), never below ``floor``.

    The decay is clipped, not rescaled, so every step above the floor has the multiplier it has without one,
    and the steps after ``total`` keep the floor."""
    if step < warmup:
        return (step + 1) / warmup
    if shape == "constant":
        return 1.0
    left = max(0.0, (total - step) / max(1, total - warmup))
    return max(floor, left if shape == "linear" else 0.5 * (1.0 - math.cos(math.pi * left)))
