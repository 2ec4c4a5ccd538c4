"""Divergence guard: notice a run blowing up, go back to the last good state and carry on more gently."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..recipes import Recipe
from .callbacks import Callback, LearningRateOwner, TrainerView
from .distributed import DistributedError, all_reduce_max, process_info

__all__ = ["DivergenceGuard", "DivergenceError"]

logger = logging.getLogger("ebmlib")

PROBLEMS = ("non-finite loss, energy or metric", "runaway loss, energy or metric", "non-finite or runaway gradient")
"""What each of the guard's three flags means, in the order they are kept."""


class DivergenceError(RuntimeError):
    """Training kept diverging after the allowed number of recoveries.

    Examples
    --------
    >>> issubclass(DivergenceError, RuntimeError)
    True
    """


class DivergenceGuard(Callback):
    r"""Watch a recipe's training steps for divergence and recover from it: a :class:`Callback`.

    Every step (``on_step_end``), :meth:`observe` folds three checks into flags
    kept on the training device (no host sync):

    - a metric (loss, energies, energy gaps, accuracies) is NaN or infinite;
    - a metric has :math:`|m| > \text{max\_abs\_energy}` (a runaway energy);
    - the gradient norm :math:`\|\nabla_\theta \mathcal{L}\|_2` of the recipe's
      parameters is non-finite or above ``max_grad_norm``.

    :meth:`check` reads the flags (one host sync, at the trainer's ``on_sync``
    points: every ``refresh_every`` steps and before every checkpoint). Under
    ``torch.distributed`` the flags of all processes are combined by one
    collective first, so every process takes the same decision. If they are
    clear, it takes an in-memory snapshot of the recipe's ``state_dict`` and
    of its optimizers': the last good state. If one is set, every process
    restores its snapshot, asks the learning-rate schedule to scale the
    learning rates by ``lr_factor`` (:meth:`~ebmlib.training.LearningRateSchedule.scale_by`:
    the guard never writes a learning rate itself), restarts the recipe's
    chains (:meth:`~ebmlib.recipes.Recipe.restart_chains`, if
    ``restart_chains``) and logs a warning to the ``"ebmlib"`` logger; after
    ``max_recoveries`` recoveries, the next divergence raises
    :class:`DivergenceError` (with the last good state restored).

    A training step that raises a ``ValueError`` or ``RuntimeError`` (a step
    on an already diverged state can: NaN chains fail the sampler's input
    check) is handled by a check at once (``on_step_error``), jointly with the
    other processes; if no process saw a divergence, the error is re-raised.

    It uses only the :class:`~ebmlib.recipes.Recipe` protocol, so it guards a
    recipe with or without chains.

    Parameters
    ----------
    max_abs_energy : float
        Bound on the absolute value of every metric (JEM's reference code
        stops when the loss passes ``1e8``).
    max_grad_norm : float
        Bound on the gradient norm (default: only non-finite gradients count).
    lr_factor : float
        Learning rates are multiplied by this after each recovery, in ``(0, 1]``.
    max_recoveries : int
        Recoveries allowed before :class:`DivergenceError`.
    restart_chains : bool
        Restart the recipe's chains after a recovery (otherwise the
        snapshot's chains are kept).

    Attributes
    ----------
    recoveries : int
    events : list of dict
        One per recovery: ``step``, ``restored_step``, ``problem``, ``lr_scale``.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.buffers import ReplayBuffer, UniformInit
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> from ebmlib.recipes import EBM
    >>> from ebmlib.samplers import Langevin
    >>> from ebmlib.training import Constant
    >>> model = NetworkEnergy(MLP(2, 1, hidden=8))
    >>> recipe = EBM(model, Langevin(step_size=0.01, n_steps=2), ReplayBuffer(16, UniformInit((2,))),
    ...              torch.optim.SGD(model.parameters(), lr=0.1))
    >>> schedule = Constant()
    >>> schedule.attach(recipe.optimizers())
    >>> guard = DivergenceGuard(lr_factor=0.5)
    >>> guard.check(recipe, schedule, step=0)  # healthy: takes the first snapshot
    True
    >>> guard.observe(recipe, {"loss": torch.tensor(float("nan"))})
    >>> guard.check(recipe, schedule, step=1), guard.recoveries, recipe.optimizer.param_groups[0]["lr"]
    (False, 1, 0.05)
    """

    def __init__(
        self,
        max_abs_energy: float = 1e8,
        max_grad_norm: float = math.inf,
        lr_factor: float = 0.5,
        max_recoveries: int = 3,
        restart_chains: bool = True,
    ) -> None:
        if not max_abs_energy > 0:
            raise ValueError(f"max_abs_energy must be positive, got {max_abs_energy}")
        if not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive, got {max_grad_norm}")
        if not 0 < lr_factor <= 1:
            raise ValueError(f"lr_factor must lie in (0, 1], got {lr_factor}")
        if max_recoveries < 0:
            raise ValueError(f"max_recoveries must be a non-negative number, got {max_recoveries}")
        self.max_abs_energy = max_abs_energy
        self.max_grad_norm = max_grad_norm
        self.lr_factor = lr_factor
        self.max_recoveries = max_recoveries
        self.restart_chains = restart_chains
        self.recoveries = 0
        self.events: list[dict[str, Any]] = []
        self._flags: Tensor | None = None
        self._snapshot: dict[str, Any] | None = None
        self._snapshot_step = 0

    @torch.no_grad()
    def observe(self, recipe: Recipe, metrics: Mapping[str, Tensor]) -> None:
        """Fold one training step's metrics and gradients into the flags (on the device, no sync)."""
        values = torch.stack([v.detach().float().reshape(()) for v in metrics.values()]) if metrics else None
        gradients = [p.grad.detach() for p in recipe.parameters() if p.grad is not None]
        device = values.device if values is not None else (gradients[0].device if gradients else None)
        if device is None:
            return
        flags = torch.zeros(3, dtype=torch.bool, device=device)
        if values is not None:
            flags[0] = ~torch.isfinite(values).all()
            flags[1] = (values.abs() > self.max_abs_energy).any()
        if gradients:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in gradients]))
            flags[2] = ~torch.isfinite(norm) | (norm > self.max_grad_norm)
        self._flags = flags if self._flags is None else self._flags | flags

    def diverged(self) -> bool:
        """Whether this process observed a divergence since the last :meth:`check` (one host sync; flags kept)."""
        return self._flags is not None and bool(self._flags.any().cpu())

    def check(
        self,
        recipe: Recipe,
        lr_schedule: LearningRateOwner,
        generator: torch.Generator | None = None,
        step: int = 0,
        synchronize: bool = True,
    ) -> bool:
        """Read the flags (one host sync): snapshot the state if healthy, else recover; ``True`` if healthy.

        Parameters
        ----------
        recipe : Recipe
        lr_schedule : LearningRateSchedule (or any LearningRateOwner)
            The owner of the learning rates, asked to scale them on a recovery.
        generator : torch.Generator, optional
            For restarting the chains.
        step : int
            The current step (for the log and :attr:`events`).
        synchronize : bool
            Combine the flags over all ``torch.distributed`` processes with one
            collective (all must call ``check`` together).

        Raises
        ------
        DivergenceError
            On a divergence after ``max_recoveries`` recoveries, or before any healthy check.
        """
        flags, self._flags = self._flags, None
        if synchronize and process_info().world_size > 1:
            device = next((p.device for p in recipe.parameters()), torch.device("cpu"))
            local = torch.zeros(3, dtype=torch.int32, device=device) if flags is None else flags.to(torch.int32)
            flags = all_reduce_max(local, "combining the divergence flags").bool()
        elif flags is None and self._snapshot is not None:  # nothing happened since the last check
            return True
        problems = [] if flags is None else [p for p, bad in zip(PROBLEMS, flags.cpu(), strict=True) if bad]
        if not problems:
            self._snapshot = {"recipe": _clone(recipe.state_dict()),
                              "optimizers": [copy.deepcopy(o.state_dict()) for o in recipe.optimizers()]}
            self._snapshot_step = step
            return True
        if self._snapshot is None:
            raise DivergenceError(f"training diverged ({', '.join(problems)}) by step {step}, before any healthy check")
        recipe.load_state_dict(self._snapshot["recipe"])
        for optimizer, state in zip(recipe.optimizers(), self._snapshot["optimizers"], strict=True):
            optimizer.load_state_dict(copy.deepcopy(state))
            optimizer.zero_grad(set_to_none=True)  # the diverged gradients must not be observed again
        if self.recoveries >= self.max_recoveries:
            lr_schedule.reapply()  # the snapshot's optimizer state brought its own learning rates
            raise DivergenceError(
                f"training diverged ({', '.join(problems)}) by step {step} after {self.recoveries} recoveries "
                f"(max_recoveries={self.max_recoveries}); the model, optimizer and chains of step "
                f"{self._snapshot_step}, the last healthy check, are restored. Try a lower learning rate, a smaller "
                "sampler step size or a larger energy regularisation."
            )
        self.recoveries += 1
        lr_schedule.scale_by(self.lr_factor)
        if self.restart_chains:
            recipe.restart_chains(generator)
        event = {"step": step, "restored_step": self._snapshot_step, "problem": ", ".join(problems),
                 "lr_scale": lr_schedule.scale}
        self.events.append(event)
        logger.warning(
            "divergence at step %d (%s): restored the state of step %d, learning rates x%g%s; recovery %d of %d",
            step, event["problem"], self._snapshot_step, self.lr_factor,
            ", chains restarted" if self.restart_chains else "", self.recoveries, self.max_recoveries,
        )
        return False

    # ------------------------------------------------------------------ as a callback
    def on_step_end(self, trainer: TrainerView, metrics: Mapping[str, Tensor]) -> None:
        if metrics:
            self.observe(trainer.recipe, metrics)

    def on_sync(self, trainer: TrainerView) -> None:
        self.check(trainer.recipe, trainer.lr_schedule, trainer.generator, trainer.step)

    def on_step_error(self, trainer: TrainerView, error: Exception) -> bool:
        """Recover at once if this or another process diverged; ``False`` (re-raise) if none did."""
        if isinstance(error, DistributedError) or not isinstance(error, (ValueError, RuntimeError)):
            return False
        return not self.check(trainer.recipe, trainer.lr_schedule, trainer.generator, trainer.step + 1)

    def state_dict(self) -> dict[str, Any]:
        """Counters and events (the snapshot is retaken after loading)."""
        return {"recoveries": self.recoveries, "events": [dict(e) for e in self.events]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; forget the flags and the snapshot."""
        self.recoveries = int(state["recoveries"])
        self.events = [dict(e) for e in state["events"]]
        self._flags, self._snapshot = None, None


def _clone(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {name: value.detach().clone() for name, value in state.items()}
