"""The sampler interface: advance chains one step (``step``) or many (``sample``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal, NamedTuple, overload

import torch
from torch import Tensor, nn

from .._checks import check_batch
from ..models.base import check_energy


class ChainState(NamedTuple):
    """Where a batch of chains stands.

    Attributes
    ----------
    position : Tensor, shape ``(B, *event_shape)``
        Current samples.
    energy, grad : Tensor or None
        ``E(position)`` ``(B,)`` and ``dE/dposition`` (same shape as ``position``)
        when a sampler already computed them (MALA, HMC); ``None`` otherwise.
    """

    position: Tensor
    energy: Tensor | None = None
    grad: Tensor | None = None


class StepInfo(NamedTuple):
    """Per-step diagnostics, kept as tensors (reading them is the caller's sync).

    Attributes
    ----------
    energy : Tensor, shape ``(B,)``
        Energy at the position the step started from.
    grad_norm : Tensor, shape ``(B,)``
        L2 norm of ``dE/dx`` there, per chain.
    acceptance_rate : Tensor or None, shape ``(B,)``
        Metropolis acceptance probability of the step (MALA, HMC); ``None`` for
        samplers without an accept/reject test.
    """

    energy: Tensor
    grad_norm: Tensor
    acceptance_rate: Tensor | None = None


def energy_and_grad(
    model: nn.Module, x: Tensor, y: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``E(x)`` ``(B,)`` and ``dE/dx`` by autograd, both detached.

    Only ``x`` is differentiated: parameters' ``.grad`` are never touched.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        energy = model(x) if y is None else model(x, y)
        check_energy(energy, x, type(model).__name__)
        (grad,) = torch.autograd.grad(energy.sum(), x)
    return energy.detach(), grad


def per_chain_norm(t: Tensor) -> Tensor:
    """L2 norm over all but the first dimension, shape ``(B,)``."""
    return t.flatten(1).norm(dim=1)


class Sampler(nn.Module, ABC):
    """Abstract MCMC sampler for an energy model :math:`p(x) \\propto e^{-E(x)}`.

    A sampler holds configuration only; the chains' state is passed in and out,
    and every random draw uses the ``generator`` given (the global RNG if ``None``).
    It never changes the model's train/eval mode and never leaves gradients on
    its parameters. Subclasses implement :meth:`step`.

    Parameters
    ----------
    n_steps : int
        Default number of steps for :meth:`sample`.
    """

    def __init__(self, n_steps: int) -> None:
        super().__init__()
        if n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps}")
        self.n_steps = n_steps

    @abstractmethod
    def step(
        self,
        model: nn.Module,
        state: ChainState,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[ChainState, StepInfo]:
        """Advance every chain by one step.

        Parameters
        ----------
        model : EnergyModel
            Maps ``(B, *event_shape)`` (and labels ``y``) to energies ``(B,)``.
        state : ChainState
            Current state; ``ChainState(x)`` starts from positions ``x``.
        y : Tensor of int64, shape ``(B,)``, optional
            Labels: sample from :math:`E(x, y)` instead of :math:`E(x)`.
        generator : torch.Generator, optional
            Source of every random draw; on the chains' device.

        Returns
        -------
        (ChainState, StepInfo)
        """

    @overload
    def sample(
        self, model: nn.Module, x: Tensor, n_steps: int | None = ..., y: Tensor | None = ...,
        generator: torch.Generator | None = ..., return_diagnostics: Literal[False] = ...,
    ) -> Tensor: ...

    @overload
    def sample(
        self, model: nn.Module, x: Tensor, n_steps: int | None = ..., y: Tensor | None = ...,
        generator: torch.Generator | None = ..., *, return_diagnostics: Literal[True],
    ) -> tuple[Tensor, dict[str, Tensor]]: ...

    def sample(
        self,
        model: nn.Module,
        x: Tensor,
        n_steps: int | None = None,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
        return_diagnostics: bool = False,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Run chains from ``x`` for ``n_steps`` steps.

        Parameters
        ----------
        model : EnergyModel
        x : Tensor, shape ``(B, *event_shape)``
            Starting points (not modified).
        n_steps : int, optional
            Defaults to the sampler's ``n_steps``.
        y : Tensor of int64, shape ``(B,)``, optional
            Labels for class-conditional sampling.
        generator : torch.Generator, optional
        return_diagnostics : bool
            Also return a dict of per-step tensors of shape ``(n_steps,)``:
            ``energy`` and ``grad_norm`` (means over chains) and, where the
            sampler has one, ``acceptance_rate``.

        Returns
        -------
        Tensor, shape ``(B, *event_shape)``, detached
            Final positions (and the diagnostics dict on request).
        """
        n_steps = self.n_steps if n_steps is None else n_steps
        if n_steps < 0:
            raise ValueError(f"n_steps must be non-negative, got {n_steps}")
        check_batch(x, "x")
        if y is not None and tuple(y.shape) != (x.shape[0],):
            raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        state = ChainState(x.detach())
        infos: list[StepInfo] = []
        for _ in range(n_steps):
            state, info = self.step(model, state, y, generator)
            if return_diagnostics:
                infos.append(info)
        samples = state.position.detach()
        if not return_diagnostics:
            return samples
        return samples, stack_diagnostics(infos, x)


def stack_diagnostics(infos: list[StepInfo], x: Tensor) -> dict[str, Tensor]:
    """Stack per-step infos into ``(n_steps,)`` tensors of chain means."""
    empty = x.new_zeros(0)
    out = {
        "energy": torch.stack([i.energy.mean() for i in infos]) if infos else empty,
        "grad_norm": torch.stack([i.grad_norm.mean() for i in infos]) if infos else empty,
    }
    rates = [i.acceptance_rate for i in infos if i.acceptance_rate is not None]
    if rates:
        out["acceptance_rate"] = torch.stack([r.mean() for r in rates])
    return out
