"""The No-U-Turn Sampler (NUTS), batched over chains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from .._checks import check_count, check_positive
from .base import (
    ChainState,
    Extra,
    FastPaths,
    StepInfo,
    per_chain,
    per_chain_norm,
    with_extras,
)
from .hmc import MassMatrixSampler, draw_momentum, kinetic_energy, velocity
from .metropolis import metropolis_test, select


class NUTSInfo(StepInfo):
    """:class:`~ebmlib.samplers.StepInfo` of a NUTS step, with the trajectory each chain built.

    The last four are its ``extras``, keyword arguments of the constructor.

    Attributes
    ----------
    energy, grad_norm
        As in :class:`~ebmlib.samplers.StepInfo`.
    acceptance_rate : Tensor, shape ``(B,)``
        Mean of :math:`\\min(1, e^{H_0 - H})` over the points of the trajectory
        (Stan's ``accept_stat``, the statistic step-size tuning aims at 0.8 or so).
    n_leapfrog : Tensor of int64, shape ``(B,)``
        Leapfrog steps each chain's trajectory took; each costs one
        energy-and-gradient evaluation.
    tree_depth : Tensor of int64, shape ``(B,)``
        Doublings each chain's trajectory took.
    diverging : Tensor of bool, shape ``(B,)``
        Whether the trajectory ended on an energy error above ``max_energy_error``.
    n_batch_leapfrog : Tensor of int64, shape ``()``
        Leapfrog steps the batch evaluated: the longest trajectory's count,
        since all chains step together (finished chains wait).

    Examples
    --------
    >>> import torch
    >>> info = NUTSInfo(torch.zeros(2), torch.zeros(2), torch.ones(2), n_leapfrog=torch.tensor([3, 7]))
    >>> info.n_leapfrog.tolist(), isinstance(info, StepInfo)
    ([3, 7], True)
    """

    __slots__ = ()
    n_leapfrog = Extra[Tensor]()
    tree_depth = Extra[Tensor]()
    diverging = Extra[Tensor]()
    n_batch_leapfrog = Extra[Tensor]()

    def __new__(
        cls, energy: Tensor, grad_norm: Tensor, acceptance_rate: Tensor | None = None,
        extras: Mapping[str, Tensor] | None = None, *, n_leapfrog: Tensor | None = None,
        tree_depth: Tensor | None = None, diverging: Tensor | None = None, n_batch_leapfrog: Tensor | None = None,
    ) -> NUTSInfo:
        return super().__new__(cls, energy, grad_norm, acceptance_rate, with_extras(
            extras, n_leapfrog=n_leapfrog, tree_depth=tree_depth, diverging=diverging,
            n_batch_leapfrog=n_batch_leapfrog))


def checkpoint_range(leaf: int) -> tuple[int, int]:
    """Checkpoints that the subtrees ending at leaf ``leaf`` (0-based, in build order) start at.

    A subtree of :math:`2^m` leaves ends at ``leaf`` when the last :math:`m`
    bits of ``leaf`` are ones; checkpoint ``i`` holds the first leaf of the
    subtree whose turn it is to be checked. Returns ``(first, last)``; empty
    (``first > last``) for even leaves, which start subtrees instead.

    Examples
    --------
    >>> [checkpoint_range(n) for n in range(4)]
    [(1, 0), (0, 0), (2, 1), (0, 1)]
    """
    last = bin(leaf >> 1).count("1")
    trailing_ones = len(bin(leaf)) - len(bin(leaf).rstrip("1"))
    return last - trailing_ones + 1, last


def is_turning(p_start: Tensor, p_end: Tensor, rho: Tensor) -> Tensor:
    """The no-U-turn criterion of a trajectory with end velocities ``p_start``, ``p_end`` and momentum sum ``rho``.

    All ``(B, D)``; returns ``(B,)`` bools, true where :math:`p_{start} \\cdot \\rho \\le 0`
    or :math:`p_{end} \\cdot \\rho \\le 0`. The ends are the velocities :math:`M^{-1} p`
    (Betancourt's :math:`p^\\sharp`), the momenta themselves for the unit mass.
    """
    return ((p_start * rho).sum(1) <= 0) | ((p_end * rho).sum(1) <= 0)


Point = tuple[Tensor, Tensor, Tensor]
"""Three per-chain tensors that travel together: (position, momentum, gradient) or (position, energy, gradient)."""


def select_point(take: Tensor, new: Point, old: Point) -> Point:
    """Per chain, ``new`` where ``take`` (shape ``(B,)``) else ``old``, for each of the three tensors."""
    return select(take, new[0], old[0]), select(take, new[1], old[1]), select(take, new[2], old[2])


class Subtree(NamedTuple):
    """What building :math:`2^j` leapfrog steps returns, per chain."""

    end: Point  # the far end: position, momentum, gradient
    proposal: Point  # position, energy, gradient of the point drawn from the subtree
    log_weight: Tensor  # log of the sum of exp(H0 - H) over the subtree
    rho: Tensor  # sum of the subtree's momenta, (B, D)
    invalid: Tensor  # the subtree turned inside or diverged: discard it
    diverged: Tensor
    acceptance_sum: Tensor  # sum of min(1, exp(H0 - H)) over its points
    n_leapfrog: Tensor


class NUTS(MassMatrixSampler):
    r"""The No-U-Turn Sampler: HMC that picks each trajectory's length itself, batched over chains.

    Each step draws a momentum :math:`p \sim \mathcal{N}(0, M)` and builds a
    trajectory of the Hamiltonian :math:`H(x, p) = E(x) + \tfrac12 p^\top M^{-1} p`
    with leapfrog steps of size :math:`\epsilon`, as in :class:`~ebmlib.samplers.HMC`,
    by doubling: at depth :math:`j` it extends the trajectory by :math:`2^j`
    steps forwards or backwards in time (a fair coin per chain). It stops when
    the trajectory starts to turn back on itself, that is when for its end
    momenta :math:`p^-, p^+` and the sum :math:`\rho` of its momenta

    .. math::

        M^{-1} p^- \cdot \rho \le 0 \quad \text{or} \quad M^{-1} p^+ \cdot \rho \le 0,

    checked on the whole trajectory and on every subtree of the doubling
    (Hoffman & Gelman 2014; Betancourt 2017, whose generalised criterion this is),
    when :math:`H - H_0` exceeds ``max_energy_error`` (a divergence), or after
    ``max_tree_depth`` doublings. A doubling that ends on a subtree's turn or a
    divergence is discarded. The next state is drawn from the trajectory's
    points with probabilities :math:`\propto e^{-H}` (multinomial sampling),
    progressively: within a subtree uniformly by weight, and between the old
    trajectory and a new subtree with probability
    :math:`\min(1, W_{\text{new}} / W_{\text{old}})`, which favours the far end.
    The chain leaves :math:`e^{-E}` invariant for every step size; the trajectory
    length needs no tuning, :math:`\epsilon` does (aim for an ``acceptance_rate``
    of about 0.8), and so does the mass :math:`M^{-1}` = ``diag(inverse_mass)``
    (the identity by default; the target's variances are best) where the
    coordinates' scales differ: :class:`~ebmlib.samplers.WindowedAdaptation`
    tunes both in a warm-up.

    All chains of the batch build their trees together: every chain at the
    same depth takes the same leapfrog steps, so the checkpoints of the subtree
    checks are shared and everything per chain is a mask; a chain that has
    stopped waits, its results discarded. The cost of a step is therefore the
    batch's longest trajectory (``n_batch_leapfrog`` in :class:`NUTSInfo`),
    against ``n_leapfrog`` per chain.

    Host synchronisation, stated plainly: with ``early_exit=True`` (the
    default), a step reads one boolean on the host before each doubling, "is
    any chain still building?", so as to stop when all are done: at most
    ``max_tree_depth - 1`` reads per step, none inside the leapfrog loop. With
    ``early_exit=False`` it reads nothing and always runs
    :math:`2^{\text{max\_tree\_depth}} - 1` leapfrog steps (the finished chains'
    discarded), which a CUDA graph can capture; keep ``max_tree_depth`` small then.

    Parameters
    ----------
    step_size : float
        Leapfrog step :math:`\epsilon > 0`.
    max_tree_depth : int
        Most doublings per step: at most :math:`2^{\text{max\_tree\_depth}} - 1` leapfrog steps.
    max_energy_error : float
        A leapfrog point with :math:`H - H_0` above this is a divergence.
    early_exit : bool
        Stop building when every chain is done (one host read per doubling).
    n_steps : int
        Default number of steps for :meth:`sample`.
    inverse_mass : Tensor or sequence of float, optional
        The diagonal of :math:`M^{-1}`, one finite positive number per
        coordinate of a chain (any shape with that many elements). ``None``
        (default): unit mass. A setting, kept as a tuple of floats, and a
        tensor copy that moves with the sampler (``sampler.to(device)``: do so
        for ``cuda_graph``).
    precision, compile_gradient, cuda_graph, check_finite
        Keyword-only: the fast paths and the finiteness check of
        :class:`~ebmlib.samplers.Sampler` (``cuda_graph`` needs ``early_exit=False``).
        ``precision`` only ``"full"``: the trajectory's weights compare energies,
        which bfloat16 rounds to 3 digits.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import EnergyModel
    >>> class Stretched(EnergyModel):  # N(0, diag(1, 100))
    ...     def energy(self, x, y=None):
    ...         return 0.5 * (x[:, 0] ** 2 + x[:, 1] ** 2 / 100.0)
    >>> sampler = NUTS(step_size=0.5)
    >>> generator = torch.Generator().manual_seed(0)
    >>> x = sampler.sample(Stretched(), torch.zeros(500, 2), n_steps=20, generator=generator)
    >>> bool((x.var(0) / torch.tensor([1.0, 100.0]) - 1).abs().max() < 0.2)  # variances 1 and 100
    True
    >>> state, info = sampler.step(Stretched(), ChainState(x), generator=generator)
    >>> info.n_leapfrog.shape, bool((info.tree_depth <= 10).all()), bool(info.n_batch_leapfrog >= info.n_leapfrog.max())
    (torch.Size([500]), True, True)
    """

    settings = ("step_size", "max_tree_depth", "max_energy_error", "early_exit", "n_steps", "inverse_mass")
    precisions = ("full",)

    def __init__(
        self,
        step_size: float,
        max_tree_depth: int = 10,
        max_energy_error: float = 1000.0,
        early_exit: bool = True,
        n_steps: int = 20,
        inverse_mass: Tensor | Sequence[float] | None = None,
        **fast_paths: Unpack[FastPaths],
    ) -> None:
        if not isinstance(early_exit, bool):
            raise TypeError(f"early_exit must be True or False, got {early_exit!r} ({type(early_exit).__name__})")
        if fast_paths.get("cuda_graph") and early_exit:
            raise ValueError("cuda_graph=True needs early_exit=False: a CUDA graph cannot read whether chains are done")
        super().__init__(step_size, n_steps, inverse_mass, **fast_paths)
        self.max_tree_depth = check_count(max_tree_depth, "max_tree_depth")
        self.max_energy_error = check_positive(max_energy_error, "max_energy_error")
        self.early_exit = early_exit

    def _transition(
        self, model: nn.Module, state: ChainState, y: Tensor | None, generator: torch.Generator | None,
        step_size: float | Tensor, mass: Tensor | None,
    ) -> tuple[ChainState, StepInfo]:
        x0 = state.position
        b, device, dtype = x0.shape[0], x0.device, x0.dtype
        energy0, grad0 = self.energy_and_grad_at(model, state, y)
        p0 = draw_momentum(x0, mass, generator)
        hamiltonian0 = energy0 + kinetic_energy(p0, mass)

        left: Point = (x0, p0, grad0)  # the trajectory's ends in time: position, momentum, gradient
        right: Point = left
        proposal: Point = (x0, energy0, grad0)
        log_weight = torch.zeros(b, device=device, dtype=dtype)  # log of sum of exp(H0 - H) over the trajectory
        rho = p0.flatten(1)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        diverging = torch.zeros_like(done)
        tree_depth = torch.zeros(b, dtype=torch.long, device=device)
        n_leapfrog = torch.zeros_like(tree_depth)
        acceptance_sum = torch.zeros_like(log_weight)
        n_batch_leapfrog = 0

        for depth in range(self.max_tree_depth):
            if self.early_exit and depth > 0 and not bool((~done).any()):  # the one host read, once per doubling
                break
            forward = torch.rand(b, generator=generator, device=device) < 0.5
            subtree = self._build_subtree(model, y, select_point(forward, right, left), forward, depth, ~done,
                                         hamiltonian0, generator, step_size, mass)
            n_batch_leapfrog += 2**depth
            acceptance_sum = acceptance_sum + subtree.acceptance_sum
            n_leapfrog = n_leapfrog + subtree.n_leapfrog
            tree_depth = torch.where(done, tree_depth, depth + 1)
            diverging = diverging | (~done & subtree.diverged)

            # a valid subtree joins the trajectory; its proposal replaces the old with probability min(1, W_new / W_old)
            valid = ~done & ~subtree.invalid
            take = valid & metropolis_test(subtree.log_weight - log_weight, generator)[0]
            proposal = select_point(take, subtree.proposal, proposal)
            log_weight = torch.where(valid, torch.logaddexp(log_weight, subtree.log_weight), log_weight)
            right = select_point(valid & forward, subtree.end, right)
            left = select_point(valid & ~forward, subtree.end, left)
            rho = torch.where(per_chain(valid, rho), rho + subtree.rho, rho)
            done = done | ~valid | is_turning(velocity(left[1], mass).flatten(1), velocity(right[1], mass).flatten(1),
                                              rho)

        x, energy, grad = proposal
        acceptance = acceptance_sum / n_leapfrog.clamp(min=1)
        info = NUTSInfo(energy0, per_chain_norm(grad0), acceptance, n_leapfrog=n_leapfrog, tree_depth=tree_depth,
                        diverging=diverging, n_batch_leapfrog=torch.tensor(n_batch_leapfrog, device=device))
        return ChainState(x, energy, grad), info

    def _build_subtree(
        self,
        model: nn.Module,
        y: Tensor | None,
        start: Point,
        forward: Tensor,
        depth: int,
        building: Tensor,
        hamiltonian0: Tensor,
        generator: torch.Generator | None,
        step_size: float | Tensor,
        inverse_mass: Tensor | None,
    ) -> Subtree:
        """Extend every chain in ``building`` by :math:`2^{depth}` leapfrog steps from ``start`` in its direction.

        The subtree's points are drawn from progressively: each new point
        replaces the current pick with probability :math:`w / W` (its weight
        over the subtree's weight so far). A chain stops building at a point
        where a subtree (of 2, 4, ... points, checked through the shared
        checkpoints) turns, or where the energy error diverges; the others go on.
        The returned ``invalid`` is also true for chains that were not building.
        """
        x, p, grad = start
        b, device, dtype = x.shape[0], x.device, x.dtype
        step = per_chain(torch.where(forward, step_size, -step_size).to(dtype), x)
        half_step = 0.5 * step
        proposal: Point = (x, hamiltonian0, grad)  # placeholders: the first leaf replaces them
        log_weight = torch.full((b,), float("-inf"), device=device, dtype=dtype)
        rho = torch.zeros_like(p.flatten(1))
        invalid = ~building
        diverged = torch.zeros_like(invalid)
        acceptance_sum = torch.zeros_like(log_weight)
        n_leapfrog = torch.zeros(b, dtype=torch.long, device=device)
        checkpoint_momenta: list[Tensor] = [rho] * max(depth, 1)
        checkpoint_velocities: list[Tensor] = [rho] * max(depth, 1)
        checkpoint_sums: list[Tensor] = [rho] * max(depth, 1)

        # A chain's subtree counts only if the chain builds all of it: one that stops (a turn, a divergence) has
        # its subtree discarded whole. So every chain integrates every leaf unmasked, and only the flags and the
        # diagnostics look at whether it was still building.
        for leaf in range(2**depth):
            p = p - half_step * grad
            x = x + step * velocity(p, inverse_mass)
            energy, grad = self.energy_and_grad(model, x, y)
            p = p - half_step * grad
            momentum = p.flatten(1)
            sharp = velocity(p, inverse_mass).flatten(1)

            error = (energy + kinetic_energy(p, inverse_mass) - hamiltonian0).nan_to_num(float("inf"))
            new_log_weight = torch.logaddexp(log_weight, -error)
            take, _ = metropolis_test(-error - new_log_weight, generator)  # the new point's share of the weight
            proposal = select_point(take, (x, energy, grad), proposal)
            log_weight = new_log_weight
            rho = rho + momentum

            first, last = checkpoint_range(leaf)
            if leaf % 2 == 0:
                checkpoint_momenta[last], checkpoint_velocities[last], checkpoint_sums[last] = momentum, sharp, rho
            turning = torch.zeros_like(invalid)
            for i in range(first, last + 1):
                subtree_rho = rho - checkpoint_sums[i] + checkpoint_momenta[i]
                turning = turning | is_turning(checkpoint_velocities[i], sharp, subtree_rho)

            leaf_diverges = error > self.max_energy_error
            acceptance_sum = acceptance_sum + torch.where(invalid, 0.0, (-error).clamp(max=0.0).exp())
            n_leapfrog = n_leapfrog + (~invalid).long()
            diverged = diverged | (~invalid & leaf_diverges)
            invalid = invalid | turning | leaf_diverges
        return Subtree((x, p, grad), proposal, log_weight, rho, invalid, diverged, acceptance_sum, n_leapfrog)
