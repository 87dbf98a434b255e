"""An exponential moving average of a model's weights (Polyak averaging), for the trainer.

After every optimisation step ``theta_avg <- d * theta_avg + (1 - d) * theta`` (the first update
copies ``theta``), with PyTorch's own EMA rule (:func:`torch.optim.swa_utils.get_ema_multi_avg_fn`).
With ``average=d`` in the training options the trainer validates, keeps and saves the averaged
weights instead of the last iterate (Polyak & Juditsky 1992, in the exponential form common in
deep learning). Only the parameters are averaged; buffers (orderings, masks) are the model's own.

The average is *applied* to the model itself for validation (:meth:`WeightAverage.applied`)
rather than kept in a copy of the model, so that whatever the model's training schedule changed
(a KL weight, the CD-k of the thesis schedule) is what validation sees too.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn

__all__ = ["WeightAverage"]


class WeightAverage:
    """The exponential moving average of ``model``'s trainable parameters, with decay ``decay``."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the decay of a weight average lies in (0, 1), got {decay}")
        self._names = [name for name, p in model.named_parameters() if p.requires_grad]
        self._average = [p.detach().clone() for _, p in self._trained(model)]
        self._update = get_ema_multi_avg_fn(decay)
        self.n_averaged = 0

    def _trained(self, model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        params = dict(model.named_parameters())
        return [(name, params[name]) for name in self._names]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's current parameters into the average."""
        current = [p.detach() for _, p in self._trained(model)]
        if self.n_averaged == 0:
            for mine, theirs in zip(self._average, current):
                mine.copy_(theirs)
        else:
            self._update(self._average, current, self.n_averaged)
        self.n_averaged += 1

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Overwrite the model's parameters with the average."""
        for (_, p), mine in zip(self._trained(model), self._average):
            p.copy_(mine)

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """The model with the averaged parameters inside the block; its own ones restored after."""
        saved = [p.detach().clone() for _, p in self._trained(model)]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for (_, p), own in zip(self._trained(model), saved):
                    p.copy_(own)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain tensors (loads with ``weights_only=True``)."""
        return {"n_averaged": torch.tensor(self.n_averaged),
                **{f"average.{name}": t for name, t in zip(self._names, self._average)}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.n_averaged = int(state["n_averaged"])
        with torch.no_grad():
            for name, mine in zip(self._names, self._average):
                mine.copy_(state[f"average.{name}"])
