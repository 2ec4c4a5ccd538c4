"""Parallel tempering (replica exchange) over any base sampler."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from ..models.base import check_energy
from .base import ChainState, Extra, FastPaths, Sampler, StepInfo, per_chain, per_chain_norm, with_extras
from .metropolis import metropolis_test


def geometric_temperatures(max_temperature: float, n_temperatures: int) -> list[float]:
    r"""A geometric ladder :math:`T_k = T_{\max}^{(k-1)/(K-1)}`, :math:`k = 1, \dots, K`, from 1 to ``max_temperature``.

    Geometric spacing keeps the swap acceptance between neighbours roughly
    constant when the energy's heat capacity is.

    Parameters
    ----------
    max_temperature : float
        :math:`T_K > 1`.
    n_temperatures : int
        :math:`K \ge 2`.

    Returns
    -------
    list of float
        Increasing temperatures, the first 1.

    Examples
    --------
    >>> geometric_temperatures(8.0, 4)
    [1.0, 2.0, 4.0, 8.0]
    """
    if not max_temperature > 1:
        raise ValueError(f"max_temperature must be greater than 1, got {max_temperature}")
    if n_temperatures < 2:
        raise ValueError(f"n_temperatures must be at least 2, got {n_temperatures}")
    ratio = max_temperature ** (1.0 / (n_temperatures - 1))
    return [float(ratio**k) if k < n_temperatures - 1 else float(max_temperature) for k in range(n_temperatures)]


class TemperedEnergy(nn.Module):
    r"""A model's energy scaled per chain by an inverse temperature: :math:`\beta_i E(x_i)`.

    Parameters
    ----------
    model : nn.Module
        Maps ``(N, *event_shape)`` (and labels) to energies ``(N,)``.
    inverse_temperature : Tensor, shape ``(N,)``
        :math:`\beta_i` of each chain.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import NetworkEnergy
    >>> model = NetworkEnergy(torch.nn.Linear(2, 1))
    >>> x = torch.randn(3, 2)
    >>> torch.allclose(TemperedEnergy(model, torch.tensor([1.0, 0.5, 0.0]))(x), model(x) * torch.tensor([1, 0.5, 0]))
    True
    """

    def __init__(self, model: nn.Module, inverse_temperature: Tensor) -> None:
        super().__init__()
        self.model = model
        self.inverse_temperature = inverse_temperature

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """:math:`\\beta_i E(x_i)`, shape ``(N,)``."""
        energy = self.model(x) if y is None else self.model(x, y)
        check_energy(energy, x, type(self.model).__name__)
        return self.inverse_temperature.to(energy.dtype) * energy


class TemperedState(ChainState):
    """Where parallel-tempering chains stand: the cold chains, every replica, and swap statistics.

    The replicas carry their own cached energies and gradients; the cold chains'
    are not kept apart. A state that :meth:`ParallelTempering.step` returns holds
    all four entries below in ``extras`` (keyword arguments of the constructor);
    a fresh one holds none (every attribute ``None``).

    Attributes
    ----------
    position : Tensor, shape ``(B, *event_shape)``
        The chains at the first (coldest) temperature: the samples.
    replicas : ChainState or None
        The base sampler's state of all :math:`K \\times B` replicas, replica
        slot :math:`r` of chain :math:`b` at row :math:`rB + b`; its cached
        energies and gradients, if any, are the tempered ones :math:`\\beta E`.
    ranks : Tensor of int64, shape ``(K, B)``, or None
        Which temperature (0 = coldest) each replica slot holds now.
    swap_acceptance_sum : Tensor, shape ``(K - 1,)``, or None
        Swap acceptance probability between temperatures :math:`k` and
        :math:`k + 1`, summed over chains and swap rounds.
    n_swap_rounds : Tensor of int64, shape ``()``, or None
        Swap rounds so far (one per step).

    Examples
    --------
    >>> import torch
    >>> state = TemperedState(torch.zeros(3, 2))
    >>> state.replicas is None, isinstance(state, ChainState)
    (True, True)
    """

    __slots__ = ()
    replicas = Extra[ChainState]()
    ranks = Extra[Tensor]()
    swap_acceptance_sum = Extra[Tensor]()
    n_swap_rounds = Extra[Tensor]()

    def __new__(
        cls, position: Tensor, energy: Tensor | None = None, grad: Tensor | None = None,
        extras: Mapping[str, Tensor | ChainState] | None = None, *, replicas: ChainState | None = None,
        ranks: Tensor | None = None, swap_acceptance_sum: Tensor | None = None, n_swap_rounds: Tensor | None = None,
    ) -> TemperedState:
        return super().__new__(cls, position, energy, grad, with_extras(
            extras, replicas=replicas, ranks=ranks, swap_acceptance_sum=swap_acceptance_sum,
            n_swap_rounds=n_swap_rounds))

    @property
    def swap_acceptance_rate(self) -> Tensor:
        """Mean swap acceptance probability between neighbouring temperatures, shape ``(K - 1,)``."""
        if self.swap_acceptance_sum is None or self.n_swap_rounds is None:
            raise ValueError("swap_acceptance_rate needs a state returned by ParallelTempering.step, got a fresh one")
        return self.swap_acceptance_sum / (self.n_swap_rounds.clamp(min=1) * self.position.shape[0])


def inverse_permutation(permutation: Tensor) -> Tensor:
    """The inverse of a permutation along dimension 0 of each column, shape ``(K, B)``."""
    k = permutation.shape[0]
    ranks = torch.arange(k, device=permutation.device).view(k, 1).expand_as(permutation)
    return torch.empty_like(permutation).scatter_(0, permutation, ranks)


class ParallelTempering(Sampler):
    r"""Parallel tempering (replica exchange): a base sampler at a ladder of temperatures, with swaps.

    Every chain runs :math:`K` replicas, one at each temperature
    :math:`T_1 < \dots < T_K` (:math:`\beta_k = 1/T_k`), jointly targeting
    :math:`\prod_k e^{-\beta_k E(x_k)}`; the replica at :math:`T_1` samples
    :math:`e^{-E/T_1}` (the model's law when :math:`T_1 = 1`), and the hot ones
    cross energy barriers it cannot. One step first proposes swaps between
    neighbouring temperatures, the pairs :math:`(1, 2), (3, 4), \dots` and then
    :math:`(2, 3), (4, 5), \dots` (the deterministic even-odd scheme), each accepted
    with probability

    .. math::

        \alpha_k = \min\Big(1, \exp\big((\beta_k - \beta_{k+1})
                     (E(x_k) - E(x_{k+1}))\big)\Big),

    (:func:`~ebmlib.samplers.metropolis_test` decides), and then advances every
    replica by one step of the base sampler on the tempered energy
    :math:`\beta_k E`. A swap exchanges the temperatures of the
    two replicas rather than their states, so whatever the base sampler keeps
    per chain (velocities, cached gradients) stays valid; cached energies and
    gradients are rescaled to the new :math:`\beta`. The energies the swaps need
    are the base sampler's cached ones, or one energy-and-gradient evaluation
    that the base step then reuses: a step costs what :math:`K` base steps cost.

    :meth:`step` returns a :class:`TemperedState` whose ``position`` holds the
    coldest replicas and whose ``swap_acceptance_rate`` is the running mean
    acceptance per neighbouring pair: the diagnostic for spacing the ladder
    (aim for 0.2 or more on every pair). The per-step ``acceptance_rate`` of
    :class:`~ebmlib.samplers.StepInfo` is the mean over the :math:`K - 1` pairs
    of the swap acceptance probability, per chain.

    Parameters
    ----------
    base : Sampler
        Any sampler; its ``step`` runs on all :math:`K \times B` replicas at once
        (its own ``n_steps`` is not used). Its ``compile_gradient`` fast path
        is not supported here.
    temperatures : sequence of float
        :math:`T_1 < \dots < T_K`, at least two, positive; usually
        :math:`T_1 = 1`. See :func:`geometric_temperatures`.
    n_steps : int
        Default number of steps for :meth:`sample`.
    cuda_graph, check_finite : bool
        Keyword-only: the CUDA-graph fast path (valid when the base sampler reads
        no values on the host) and the finiteness check of :class:`~ebmlib.samplers.Sampler`.
    precision : {"full"}
        Only ``"full"``: the swap test compares energies. Set ``precision`` on
        the base sampler instead (it computes every energy and gradient).
    compile_gradient : bool
        Only ``False``; see ``base``.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import EnergyModel
    >>> from ebmlib.samplers import MALA
    >>> class DoubleWell(EnergyModel):
    ...     def energy(self, x, y=None):
    ...         return 0.5 * (x[:, 0] ** 2 - 4.0) ** 2 + 0.5 * x[:, 1] ** 2  # wells at x_0 = -2, 2; barrier 8
    >>> sampler = ParallelTempering(MALA(step_size=0.1), geometric_temperatures(10.0, 3), n_steps=300)
    >>> generator = torch.Generator().manual_seed(0)
    >>> x = sampler.sample(DoubleWell(), torch.full((400, 2), -2.0), generator=generator)
    >>> 0.4 < float((x[:, 0] > 0).float().mean()) < 0.6  # about half the chains cross to the other well
    True
    >>> x = MALA(step_size=0.1).sample(DoubleWell(), torch.full((400, 2), -2.0), n_steps=300, generator=generator)
    >>> float((x[:, 0] > 0).float().mean()) < 0.05  # MALA alone stays in its well
    True
    >>> state = ChainState(torch.full((400, 2), -2.0))
    >>> for _ in range(20):
    ...     state, info = sampler.step(DoubleWell(), state, generator=generator)
    >>> state.swap_acceptance_rate.shape, info.acceptance_rate.shape
    (torch.Size([2]), torch.Size([400]))
    """

    settings = ("temperatures", "base_configuration", "n_steps")
    precisions = ("full",)

    def __init__(
        self,
        base: Sampler,
        temperatures: Sequence[float],
        n_steps: int = 20,
        **fast_paths: Unpack[FastPaths],
    ) -> None:
        super().__init__(n_steps, **fast_paths)
        if not isinstance(base, Sampler):
            raise TypeError(f"base must be an ebmlib Sampler, got {type(base).__name__}")
        if self.compile_gradient or base.compile_gradient:
            raise ValueError("ParallelTempering runs its base sampler on a tempered wrapper of the model, which "
                             "compile_gradient would recompile every step; leave compile_gradient off on both")
        temperatures = [float(t) for t in temperatures]
        increasing = all(a < b for a, b in zip(temperatures, temperatures[1:], strict=False))
        if len(temperatures) < 2 or not 0 < temperatures[0] or not temperatures[-1] < math.inf or not increasing:
            raise ValueError(f"temperatures must be at least two increasing finite positive numbers, "
                             f"got {temperatures}")
        self.base = base
        self.temperatures = tuple(temperatures)
        self.register_buffer("inverse_temperatures", 1.0 / torch.tensor(temperatures, dtype=torch.float64))
        self.inverse_temperatures: Tensor

    def step(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[ChainState, StepInfo]:
        x = state.position
        k, b = len(self.temperatures), x.shape[0]
        betas = self.inverse_temperatures.to(x.dtype)
        if isinstance(state, TemperedState) and state.replicas is not None and state.ranks is not None \
                and state.swap_acceptance_sum is not None and state.n_swap_rounds is not None:
            replicas, ranks = state.replicas, state.ranks
            swap_sum, rounds = state.swap_acceptance_sum, state.n_swap_rounds
        else:  # every replica starts at the chain's position, replica slot r at temperature r
            replicas = ChainState(x.repeat(k, *([1] * (x.dim() - 1))))
            ranks = torch.arange(k, device=x.device).view(k, 1).expand(k, b)
            swap_sum, rounds = x.new_zeros(k - 1), torch.zeros((), dtype=torch.long, device=x.device)
        y_replicas = None if y is None else y.repeat(k)

        # untempered energies and gradients of every replica: from the base's cache, or computed once
        beta = betas[ranks].reshape(k * b)
        if replicas.energy is not None and replicas.grad is not None:
            energy, grad = replicas.energy / beta, replicas.grad / per_chain(beta, x)
        else:
            energy, grad = self.base.energy_and_grad(model, replicas.position, y_replicas)
        replica_of_rank = inverse_permutation(ranks)
        cold = replica_of_rank[0] * b + torch.arange(b, device=x.device)
        info_energy, info_grad_norm = energy[cold], per_chain_norm(grad[cold])

        replica_of_rank, acceptance = self.swap(energy.view(k, b), replica_of_rank, betas, generator)
        ranks = inverse_permutation(replica_of_rank)
        beta = betas[ranks].reshape(k * b)
        tempered = replicas._replace(energy=beta * energy, grad=per_chain(beta, x) * grad)
        replicas, _ = self.base.step(TemperedEnergy(model, beta), tempered, y_replicas, generator)

        cold = replica_of_rank[0] * b + torch.arange(b, device=x.device)
        new_state = TemperedState(replicas.position[cold], replicas=replicas, ranks=ranks,
                                  swap_acceptance_sum=swap_sum + acceptance.sum(1), n_swap_rounds=rounds + 1)
        return new_state, StepInfo(info_energy, info_grad_norm, acceptance.mean(0))

    def swap(
        self, energy: Tensor, replica_of_rank: Tensor, betas: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """One round of swaps (even pairs, then odd pairs).

        Parameters
        ----------
        energy : Tensor, shape ``(K, B)``
            Untempered energy of each replica slot.
        replica_of_rank : Tensor of int64, shape ``(K, B)``
            Which replica slot holds each temperature.
        betas : Tensor, shape ``(K,)``
        generator : torch.Generator, optional

        Returns
        -------
        replica_of_rank : Tensor of int64, shape ``(K, B)``
            After the swaps.
        acceptance : Tensor, shape ``(K - 1, B)``
            Swap acceptance probability of each neighbouring pair.
        """
        k = replica_of_rank.shape[0]
        acceptance = energy.new_empty(k - 1, energy.shape[1])
        for parity in (0, 1):
            low, high = slice(parity, k - 1, 2), slice(parity + 1, k, 2)
            if parity >= k - 1:
                continue
            low_replica, high_replica = replica_of_rank[low], replica_of_rank[high]
            log_ratio = (betas[low] - betas[high]).view(-1, 1) * (
                energy.gather(0, low_replica) - energy.gather(0, high_replica))
            accept, alpha = metropolis_test(log_ratio, generator)
            replica_of_rank = replica_of_rank.clone()
            replica_of_rank[low] = torch.where(accept, high_replica, low_replica)
            replica_of_rank[high] = torch.where(accept, low_replica, high_replica)
            acceptance[low] = alpha
        return replica_of_rank, acceptance

    @property
    def base_configuration(self) -> tuple[str, tuple[tuple[str, Any], ...]]:
        """The base sampler's class name and :meth:`~ebmlib.samplers.Sampler.configuration`."""
        return type(self.base).__name__, self.base.configuration()
