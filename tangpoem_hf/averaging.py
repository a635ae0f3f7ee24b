"""An averaged copy of the weights, used to validate and save a run (AWD-LSTM's averaged SGD, in
the form that suits Adam: an exponential moving average).

Noisy late steps move the raw weights around a minimum; their average sits nearer its centre and
scores better on held-out poems (Polyak & Juditsky 1992; Merity et al. 2017). Training itself
always continues from the raw weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

PREFIX = "avg."  # how the averaged tensors are named in a checkpoint


class WeightAverage:
    """An exponential moving average of a model's parameters, updated after every optimiser step.

    The decay ramps up as ``(1 + n) / (10 + n)`` over the first updates (as TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``), so early validations are not dominated by
    the weights the run started from.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"An average's decay must lie in (0, 1), not {decay}.")
        self.decay = decay
        self.updates = 0
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach(), 1.0 - decay)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block and its own again after it."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, avg in self.shadow.items():
                params[name].data, self.shadow[name] = avg, params[name].data
        try:
            yield
        finally:
            with torch.no_grad():
                for name, raw in self.shadow.items():
                    params[name].data, self.shadow[name] = raw, params[name].data

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {PREFIX + name: t.detach().cpu().contiguous() for name, t in self.shadow.items()}

    def load(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        """Restore from a checkpoint's tensors (as :meth:`state_tensors` named them)."""
        for name, t in self.shadow.items():
            t.copy_(tensors[PREFIX + name])
        self.updates = updates
