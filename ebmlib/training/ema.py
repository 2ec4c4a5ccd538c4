"""An exponential moving average of a model's parameters, kept by a callback and swapped in to sample or evaluate."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_count, check_probability
from .callbacks import Callback, TrainerView

__all__ = ["ExponentialMovingAverage"]


class ExponentialMovingAverage(Callback):
    r"""Keep :math:`\bar\theta`, an exponential moving average of a module's floating-point parameters.

    After every ``every``-th training step,

    .. math::

        \bar\theta \leftarrow \beta_t \bar\theta + (1 - \beta_t)\, \theta,
        \qquad \beta_t = \begin{cases} \min\big(\beta, \frac{1 + t}{10 + t}\big) & \text{with warm-up} \\
                                       \beta & \text{otherwise,} \end{cases}

    with :math:`\beta` = ``decay`` and :math:`t` the number of updates so far;
    :math:`\bar\theta` starts at the parameters given. An element of :math:`\theta`
    that is NaN or Inf leaves its average unchanged (no host read is needed to
    check), so a step the :class:`~ebmlib.training.DivergenceGuard` later undoes
    cannot poison the average. Buffers are not averaged.

    Use the average to sample or evaluate with :meth:`applied` (the averaged
    weights are swapped in, and the trained ones put back after), or export it
    with :meth:`copy_to`. Its :meth:`state_dict` (the averages and the update
    count) is saved in every :class:`~ebmlib.training.Trainer` checkpoint and
    restored on :meth:`~ebmlib.training.Trainer.resume`, so a resumed run keeps
    exactly the average an uninterrupted one would.

    Parameters
    ----------
    module : nn.Module
        The module whose parameters are averaged (e.g. ``recipe.model``).
    decay : float
        :math:`\beta \in [0, 1]`.
    every : int
        Update after every ``every``-th step.
    warmup : bool
        Use :math:`\beta_t = \min(\beta, (1 + t) / (10 + t))`, so early averages
        are not dominated by the initial weights.

    Attributes
    ----------
    num_updates : int
        Updates so far, :math:`t`.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = model.weight.fill_(2.0)
    >>> ema = ExponentialMovingAverage(model, decay=0.5)
    >>> with torch.no_grad():
    ...     _ = model.weight.fill_(4.0)
    >>> ema.update()  # 0.5 * 2 + 0.5 * 4
    >>> float(ema.average["weight"]), ema.num_updates
    (3.0, 1)
    """

    def __init__(self, module: nn.Module, decay: float = 0.999, every: int = 1, warmup: bool = False) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self.decay = check_probability(decay, "decay")
        self.every = check_count(every, "every")
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.average: dict[str, Tensor] = {name: p.detach().clone() for name, p in self._parameters().items()}
        if not self.average:
            raise ValueError(f"module must have floating-point parameters to average, {type(module).__name__} has none")

    def _parameters(self) -> dict[str, Tensor]:
        return {name: p for name, p in self.module.named_parameters() if p.is_floating_point()}

    def current_decay(self) -> float:
        r""":math:`\beta_t` of the next update."""
        if self.warmup:
            return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        return self.decay

    @torch.no_grad()
    def update(self) -> None:
        """Fold the module's current parameters into the average (one update, whatever ``every``)."""
        weight = 1.0 - self.current_decay()
        for name, parameter in self._parameters().items():
            average = self.average[name]
            if average.device != parameter.device or average.dtype != parameter.dtype:
                average = self.average[name] = average.to(parameter.device, parameter.dtype)
            moved = average.lerp(parameter, weight)
            average.copy_(torch.where(torch.isfinite(parameter), moved, average))
        self.num_updates += 1

    @contextmanager
    def applied(self) -> Iterator[nn.Module]:
        """Swap the averaged weights into the module for the ``with`` block; the trained ones come back after.

        Yields
        ------
        nn.Module
            The module, holding the averages.

        Examples
        --------
        >>> model = torch.nn.Linear(2, 1)
        >>> ema = ExponentialMovingAverage(model, decay=0.9)
        >>> with torch.no_grad():
        ...     _ = model.bias.fill_(1.0)
        >>> ema.update()
        >>> with ema.applied():
        ...     inside = model.bias.clone()
        >>> torch.equal(inside, ema.average["bias"]), float(model.bias.detach())
        (True, 1.0)
        """
        trained = {name: p.detach().clone() for name, p in self._parameters().items()}
        self.copy_to(self.module)
        try:
            yield self.module
        finally:
            with torch.no_grad():
                for name, parameter in self._parameters().items():
                    parameter.copy_(trained[name])

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Write the averages into ``module`` (the averaged one, or another of the same architecture)."""
        parameters = dict(module.named_parameters())
        missing = sorted(set(self.average) - set(parameters))
        if missing:
            raise ValueError(f"module has no parameters named {', '.join(missing)}: it must have the averaged "
                             f"module's architecture")
        for name, average in self.average.items():
            parameters[name].copy_(average)

    # ------------------------------------------------------------------ as a callback
    def on_fit_start(self, trainer: TrainerView) -> None:
        """Move the averages to the parameters' device (the trainer may have moved the model)."""
        parameters = self._parameters()
        self.average = {name: a.to(parameters[name].device) for name, a in self.average.items()}

    def on_step_end(self, trainer: TrainerView, metrics: Mapping[str, Tensor]) -> None:
        if trainer.step % self.every == 0:
            self.update()

    def state_dict(self) -> dict[str, Any]:
        return {"average": {name: a.clone() for name, a in self.average.items()}, "num_updates": self.num_updates,
                "decay": self.decay}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state["average"]
        if set(saved) != set(self.average):
            raise ValueError(f"the saved average holds {sorted(saved)}, but the module's parameters are "
                             f"{sorted(self.average)}")
        for name, average in self.average.items():
            self.average[name] = saved[name].to(average.device, average.dtype).clone()
        self.num_updates = int(state["num_updates"])
