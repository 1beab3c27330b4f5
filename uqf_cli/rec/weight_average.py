"""A running (Polyak) average of a model's weights, for validation and the saved model (``--ema-decay``).

Late in training the weights wander around a minimum at the scale of the learning rate's noise; their
exponential moving average sits nearer its centre, so it validates higher and more steadily than the raw
weights of any one epoch. After every optimizer step ``t`` (counting from 0)::

    d_t   = min(decay, (1 + t) / (10 + t))     # short memory at first, so the start does not dominate
    avg  <- d_t * avg + (1 - d_t) * w

A decay ``d`` remembers about ``1 / (1 - d)`` steps. The average is a module of float32 buffers, so a
training checkpoint saves and restores it like the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch


class WeightAverage(torch.nn.Module):
    """The exponential moving average of ``model``'s trainable parameters (the model itself is not a submodule)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self._params = [p for p in model.parameters() if p.requires_grad]
        for i, p in enumerate(self._params):
            self.register_buffer(f"w{i}", p.detach().float().clone())
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def _averages(self) -> list[torch.Tensor]:
        return [getattr(self, f"w{i}") for i in range(len(self._params))]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average (call after each optimizer step)."""
        t = int(self.updates)
        weight = 1.0 - min(self.decay, (1.0 + t) / (10.0 + t))
        for avg, p in zip(self._averages(), self._params, strict=True):
            avg.lerp_(p.detach().float(), weight)
        self.updates += 1

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; its own come back afterwards."""
        own = [p.detach().clone() for p in self._params]
        with torch.no_grad():
            for avg, p in zip(self._averages(), self._params, strict=True):
                p.copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for saved, p in zip(own, self._params, strict=True):
                    p.copy_(saved)


def make_average(model: torch.nn.Module, decay: float) -> WeightAverage | None:
    """The average ``--ema-decay`` asks for, on the model's device; ``None`` when it is 0 (off)."""
    if decay <= 0:
        return None
    return WeightAverage(model, decay).to(next(model.parameters()).device)


def averaged(average: WeightAverage | None) -> AbstractContextManager[None]:
    """The block runs on the averaged weights, or on the model's own when there is no average."""
    return average.applied() if average is not None else nullcontext()
