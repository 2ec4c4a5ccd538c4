r"""Warm-up for HMC and NUTS: the step size by dual averaging, a diagonal mass matrix from windowed variances.

Stan's adaptation (Hoffman & Gelman 2014, Algorithm 5; the Stan reference manual,
"HMC algorithm parameters"), batched over chains. A warm-up of ``n_warmup``
iterations runs the sampler, tuning as it goes:

- the **step size** :math:`\epsilon`, every iteration, by dual averaging
  (:class:`DualAveraging`), so that the mean acceptance statistic reaches
  ``target_acceptance`` (0.8). One step size is shared by all chains and driven
  by their mean acceptance statistic: the chains of a batch step together
  anyway (a NUTS step costs the batch's longest trajectory), averaging over
  ``B`` chains makes the statistic ``B`` times less noisy, and the mass matrix
  is shared too;
- the **inverse mass matrix** :math:`M^{-1}` (its diagonal, ``inverse_mass``), at
  the end of each *slow window*, as the regularised variance of the positions
  drawn in that window, pooled over chains and iterations
  (:class:`WelfordState`). Windows double in length, between an initial fast
  buffer (step size only: the chains find the typical set) and a terminal one
  (the step size settles for the final mass matrix); :func:`adaptation_windows`
  gives them. After each window the step-size adaptation restarts from the
  current step size.

After the warm-up the step size is the averaged iterate :math:`\exp\bar x`, and
:meth:`WindowedAdaptation.run` hands back a new sampler configured with it and the
last mass matrix (:meth:`~ebmlib.samplers.NUTS.tuned`), with the chains where they
stand: keep sampling from there without further adaptation, which would break
the chain's invariance.

The warm-up's state is tensors only (:class:`WarmupState`), and a warm-up
iteration reads nothing on the host beyond what its sampler reads (NUTS's
``early_exit``: one boolean per doubling); :meth:`WindowedAdaptation.tuned_sampler`
reads the tuned step size and mass once, at the end. Stan's search for a first
step size (doubling or halving until one leapfrog step crosses the target) is
left out: the dual averaging starts from the sampler's ``step_size``, which it
corrects within a few iterations (by a factor :math:`e^{-1.4}` per iteration of
near-zero acceptance).

Examples
--------
A 2-D Gaussian with standard deviations 1 and 10: the warm-up finds the
variances (within 10%) and a step size at the target acceptance; the tuned
sampler then takes trajectories of 2 or 3 leapfrog steps.

>>> import torch
>>> from ebmlib.models import EnergyModel
>>> from ebmlib.samplers import NUTS, WindowedAdaptation
>>> class Stretched(EnergyModel):  # N(0, diag(1, 100))
...     def energy(self, x, y=None):
...         return 0.5 * (x[:, 0] ** 2 + x[:, 1] ** 2 / 100.0)
>>> generator = torch.Generator().manual_seed(0)
>>> warmup = WindowedAdaptation(n_warmup=100)
>>> warmup.windows  # slow windows [start, end): the mass matrix is updated at each end
((8, 10), (10, 14), (14, 22), (22, 38), (38, 75))
>>> result = warmup.run(NUTS(step_size=1.0, max_tree_depth=6), Stretched(), torch.zeros(256, 2), generator=generator)
>>> sampler = result.sampler
>>> variances = torch.tensor(sampler.inverse_mass)
>>> bool(((variances / torch.tensor([1.0, 100.0]) - 1).abs() < 0.1).all()), round(sampler.step_size, 1)
(True, 1.2)
>>> state, accepted, n_leapfrog = result.state, [], []
>>> for _ in range(10):  # sample on from the warmed-up chains, without adaptation
...     state, info = sampler.step(Stretched(), state, generator=generator)
...     accepted.append(info.acceptance_rate.mean())
...     n_leapfrog.append(info.n_leapfrog.double().mean())
>>> bool(abs(torch.stack(accepted).mean() - 0.8) < 0.05), bool(torch.stack(n_leapfrog).mean() < 4)
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, cast, runtime_checkable

import torch
from torch import Tensor, nn

from .._checks import check_batch, check_count, check_generator, check_positive, check_probability
from .base import ChainState, Sampler, StepInfo

STAN_WINDOWS = (75, 25, 50)
"""Stan's initial buffer, first slow window and terminal buffer, in iterations of a 1000-iteration warm-up."""


@runtime_checkable
class AdaptableSampler(Protocol):
    """What :class:`WindowedAdaptation` needs of a sampler: a step size and a diagonal mass it can set per call.

    :class:`~ebmlib.samplers.HMC` and :class:`~ebmlib.samplers.NUTS` provide it:
    ``transition`` is their ``step`` with ``step_size`` (a tensor, shape ``()``)
    and ``inverse_mass`` (a tensor, one entry per coordinate) given per call,
    and ``tuned`` builds the sampler to keep. Its ``StepInfo`` must carry an
    ``acceptance_rate``.

    Examples
    --------
    >>> from ebmlib.samplers import HMC, NUTS, Langevin
    >>> [isinstance(s, AdaptableSampler) for s in (HMC(step_size=0.1), NUTS(step_size=0.1), Langevin(step_size=0.1))]
    [True, True, False]
    """

    step_size: float
    inverse_mass: tuple[float, ...] | None

    def transition(
        self,
        model: nn.Module,
        state: ChainState,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        step_size: float | Tensor | None = None,
        inverse_mass: Tensor | None = None,
    ) -> tuple[ChainState, StepInfo]: ...

    def tuned(self, step_size: float, inverse_mass: Tensor | Sequence[float] | None) -> Sampler: ...


class DualAveragingState(NamedTuple):
    r"""Where a dual averaging of the log step size stands; all tensors of one shape (``()`` for a shared step size).

    Attributes
    ----------
    log_step_size : Tensor
        :math:`x_t = \log\epsilon_t`, the step size to use next.
    log_step_size_average : Tensor
        :math:`\bar x_t`, the weighted average of the iterates: the step size to
        keep once the adaptation ends.
    mean_error : Tensor
        :math:`\bar H_t`, the running mean of ``target_acceptance - acceptance``.
    n_updates : Tensor
        :math:`t`, the updates since the last (re)start, as a float.
    shrink_towards : Tensor
        :math:`\mu`, the log step size the iterates are shrunk towards,
        :math:`\log(10\,\epsilon_0)`.

    Examples
    --------
    >>> import torch
    >>> state = DualAveraging().init(torch.tensor(0.1))
    >>> round(float(state.shrink_towards.exp()), 6), float(state.n_updates)
    (1.0, 0.0)
    """

    log_step_size: Tensor
    log_step_size_average: Tensor
    mean_error: Tensor
    n_updates: Tensor
    shrink_towards: Tensor


class DualAveraging:
    r"""Step-size tuning by dual averaging (Hoffman & Gelman 2014, Algorithm 5), Stan's defaults.

    From an acceptance statistic :math:`\alpha_t` per iteration, with
    :math:`\delta` = ``target_acceptance``,

    .. math::

        \bar H_t = \Big(1 - \frac{1}{t + t_0}\Big)\bar H_{t-1} + \frac{\delta - \alpha_t}{t + t_0}, \qquad
        x_t = \mu - \frac{\sqrt t}{\gamma}\,\bar H_t, \qquad
        \bar x_t = t^{-\kappa} x_t + (1 - t^{-\kappa})\,\bar x_{t-1},

    and the next step uses :math:`\epsilon = e^{x_t}`; :math:`\bar x_t` is the
    step size to keep. :math:`\mu = \log(10\,\epsilon_0)` for a first step size
    :math:`\epsilon_0`. Everything is elementwise: a state of shape ``()`` is one
    step size, one of shape ``(B,)`` a step size per chain.

    Parameters
    ----------
    target_acceptance : float
        :math:`\delta`, in ``(0, 1)``.
    gamma : float
        :math:`\gamma > 0`, how strongly the iterates are shrunk towards :math:`\mu`.
    t0 : float
        :math:`t_0 \ge 0`, damps the first iterations.
    kappa : float
        :math:`\kappa \in (0.5, 1]`, how fast the average forgets early iterates.

    Examples
    --------
    Acceptance :math:`e^{-\epsilon}` (target 0.8 at :math:`\epsilon = -\log 0.8 = 0.223`):

    >>> import torch
    >>> tuning = DualAveraging()
    >>> state = tuning.init(torch.tensor(1.0))
    >>> for _ in range(500):
    ...     state = tuning.update(state, (-tuning.step_size(state)).exp())
    >>> round(float(tuning.final_step_size(state)), 3)
    0.229
    """

    def __init__(self, target_acceptance: float = 0.8, gamma: float = 0.05, t0: float = 10.0,
                 kappa: float = 0.75) -> None:
        self.target_acceptance = check_probability(target_acceptance, "target_acceptance")
        if not 0.0 < self.target_acceptance < 1.0:
            raise ValueError(f"target_acceptance must lie strictly between 0 and 1, got {target_acceptance}")
        self.gamma = check_positive(gamma, "gamma")
        self.t0 = check_positive(t0, "t0", allow_zero=True)
        self.kappa = check_positive(kappa, "kappa")
        if not 0.5 < self.kappa <= 1.0:
            raise ValueError(f"kappa must lie in (0.5, 1] for the average to converge, got {kappa}")

    def __repr__(self) -> str:
        return (f"DualAveraging(target_acceptance={self.target_acceptance}, gamma={self.gamma}, t0={self.t0}, "
                f"kappa={self.kappa})")

    def init(self, step_size: Tensor) -> DualAveragingState:
        """A state starting at ``step_size`` (a positive floating tensor), shrinking towards ten times it."""
        log_step_size = step_size.log()
        zero = torch.zeros_like(log_step_size)
        return DualAveragingState(log_step_size, log_step_size, zero, zero, log_step_size + math.log(10.0))

    def update(self, state: DualAveragingState, acceptance: Tensor) -> DualAveragingState:
        """The state after an iteration whose acceptance statistic was ``acceptance`` (NaN counts as 0)."""
        acceptance = acceptance.to(state.mean_error.dtype).nan_to_num(0.0).clamp(0.0, 1.0)
        n_updates = state.n_updates + 1.0
        weight = 1.0 / (n_updates + self.t0)
        mean_error = (1.0 - weight) * state.mean_error + weight * (self.target_acceptance - acceptance)
        log_step_size = state.shrink_towards - n_updates.sqrt() / self.gamma * mean_error
        average_weight = n_updates.pow(-self.kappa)
        average = average_weight * log_step_size + (1.0 - average_weight) * state.log_step_size_average
        return DualAveragingState(log_step_size, average, mean_error, n_updates, state.shrink_towards)

    def restart(self, state: DualAveragingState) -> DualAveragingState:
        """Start afresh from the current step size :math:`\\epsilon_t` (:math:`\\mu = \\log(10\\,\\epsilon_t)`), as
        Stan does when the mass matrix changes."""
        return self.init(self.step_size(state))

    @staticmethod
    def step_size(state: DualAveragingState) -> Tensor:
        """:math:`e^{x_t}`: the step size to use next."""
        return state.log_step_size.exp()

    @staticmethod
    def final_step_size(state: DualAveragingState) -> Tensor:
        """:math:`e^{\\bar x_t}`: the step size to keep when the adaptation ends."""
        return state.log_step_size_average.exp()


class WelfordState(NamedTuple):
    r"""Running mean and sum of squared deviations of draws, merged a batch at a time (Welford; Chan et al.).

    Merging a batch of :math:`n_b` draws with mean :math:`m_b` and sum of squared
    deviations :math:`S_b` into :math:`(n, m, S)`, with :math:`\delta = m_b - m`:

    .. math::

        n' = n + n_b, \quad m' = m + \delta\,\frac{n_b}{n'}, \quad
        S' = S + S_b + \delta^2\,\frac{n\,n_b}{n'}.

    Attributes
    ----------
    n_draws : Tensor, shape ``()``
        Draws merged so far, :math:`n` (a float).
    mean : Tensor, shape ``(D,)``
    sum_squares : Tensor, shape ``(D,)``
        :math:`S = \sum_i (x_i - m)^2`, per coordinate.

    Examples
    --------
    >>> import torch
    >>> draws = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0, 3.0])
    >>> state = WelfordState.empty(3).update(draws[:400]).update(draws[400:])
    >>> torch.allclose(state.mean, draws.mean(0), atol=1e-6), torch.allclose(state.variance(), draws.var(0))
    (True, True)
    """

    n_draws: Tensor
    mean: Tensor
    sum_squares: Tensor

    @classmethod
    def empty(cls, dimension: int, dtype: torch.dtype | None = None,
              device: torch.device | str | None = None) -> WelfordState:
        """No draws yet, for ``dimension`` coordinates."""
        zeros = torch.zeros(dimension, dtype=dtype, device=device)
        return cls(zeros.new_zeros(()), zeros, zeros)

    def update(self, draws: Tensor) -> WelfordState:
        """Merge ``draws`` ``(n_b, D)`` (a batch of chains' positions, flattened)."""
        draws = draws.to(self.mean.dtype)
        batch_count = draws.shape[0]
        batch_mean = draws.mean(0)
        batch_sum_squares = (draws - batch_mean).pow(2).sum(0)
        n_draws = self.n_draws + batch_count
        delta = batch_mean - self.mean
        mean = self.mean + delta * (batch_count / n_draws)
        sum_squares = self.sum_squares + batch_sum_squares + delta.pow(2) * (self.n_draws * batch_count / n_draws)
        return WelfordState(n_draws, mean, sum_squares)

    def variance(self) -> Tensor:
        """The sample variance :math:`S / (n - 1)`, shape ``(D,)``."""
        return self.sum_squares / (self.n_draws - 1.0)

    def regularized_variance(self) -> Tensor:
        r"""Stan's estimate of a diagonal inverse mass matrix, shape ``(D,)``.

        .. math::

            \frac{n}{n + 5}\,\frac{S}{n - 1} + 10^{-3}\,\frac{5}{n + 5},

        the sample variance shrunk a little towards :math:`10^{-3}` (which matters only for few draws).
        """
        n = self.n_draws
        return (n / (n + 5.0)) * self.variance() + 1e-3 * (5.0 / (n + 5.0))


def adaptation_windows(
    n_warmup: int, initial_buffer: int = 75, base_window: int = 25, terminal_buffer: int = 50
) -> tuple[tuple[int, int], ...]:
    """The slow windows ``(start, end)`` (iterations ``start`` to ``end - 1``) of a warm-up, by Stan's rule.

    The first window starts after ``initial_buffer`` iterations and lasts
    ``base_window``; each next one is twice as long as the one before, and one
    that would leave less than twice its own length before the terminal buffer
    is stretched to reach it. The last ``terminal_buffer`` iterations are outside
    every window. As in Stan, a warm-up of fewer than 20 iterations has no
    windows, and buffers that overflow ``n_warmup`` become 15% / 75% / 10% of it.

    Examples
    --------
    >>> adaptation_windows(1000)  # Stan's default warm-up
    ((75, 100), (100, 150), (150, 250), (250, 450), (450, 950))
    >>> adaptation_windows(100)  # overflowing buffers: 15 / 75 / 10
    ((15, 90),)
    """
    n_warmup = check_count(n_warmup, "n_warmup")
    initial_buffer = check_count(initial_buffer, "initial_buffer", minimum=0)
    base_window = check_count(base_window, "base_window")
    terminal_buffer = check_count(terminal_buffer, "terminal_buffer", minimum=0)
    if n_warmup < 20:
        return ()
    if initial_buffer + base_window + terminal_buffer > n_warmup:
        initial_buffer, terminal_buffer = int(0.15 * n_warmup), int(0.1 * n_warmup)
        base_window = n_warmup - initial_buffer - terminal_buffer
    last_end = n_warmup - terminal_buffer
    end, size = initial_buffer + base_window, base_window
    windows = [(initial_buffer, end)]
    while end < last_end:
        size *= 2
        next_end = end + size
        if next_end + 2 * size > last_end:
            next_end = last_end
        windows.append((end, next_end))
        end = next_end
    return tuple(windows)


class WarmupState(NamedTuple):
    """Where a warm-up stands after ``iteration`` iterations.

    Attributes
    ----------
    chains : ChainState
        The chains, as the sampler left them.
    step_size : DualAveragingState
        The step-size adaptation, shape ``()`` (one step size for all chains).
    variance : WelfordState
        The positions drawn so far in the current slow window.
    inverse_mass : Tensor, shape ``(D,)``
        The diagonal of :math:`M^{-1}` in use, over the flattened coordinates.
    iteration : int
        Iterations done.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.samplers import NUTS
    >>> state = WindowedAdaptation(n_warmup=50).init(NUTS(step_size=0.5), torch.zeros(8, 1, 2, 2))
    >>> state.inverse_mass, state.iteration, float(state.step_size.log_step_size.exp())
    (tensor([1., 1., 1., 1.]), 0, 0.5)
    """

    chains: ChainState
    step_size: DualAveragingState
    variance: WelfordState
    inverse_mass: Tensor
    iteration: int


class WarmupResult(NamedTuple):
    """What :meth:`WindowedAdaptation.run` returns.

    Attributes
    ----------
    sampler : Sampler
        A new sampler configured as the one given, with the tuned ``step_size`` and ``inverse_mass``.
    state : ChainState
        The chains at the end of the warm-up: continue from them.
    diagnostics : dict of Tensor, each of shape ``(n_warmup,)``
        ``step_size``: the step size each iteration used; ``acceptance_rate``:
        its acceptance statistic, the mean over chains.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import NetworkEnergy
    >>> from ebmlib.samplers import HMC
    >>> model = NetworkEnergy(torch.nn.Linear(2, 1))
    >>> result = WindowedAdaptation(n_warmup=5).run(HMC(step_size=0.1), model, torch.zeros(4, 2))
    >>> result.state.position.shape, result.diagnostics["step_size"].shape
    (torch.Size([4, 2]), torch.Size([5]))
    """

    sampler: Sampler
    state: ChainState
    diagnostics: dict[str, Tensor]


class WindowedAdaptation:
    r"""Stan's windowed warm-up of a sampler's step size and diagonal mass matrix, batched over chains.

    Every iteration runs one step of the sampler (its ``transition``, with the
    current step size and mass) and updates the step size by
    :class:`DualAveraging` from the mean acceptance statistic over chains. In a
    slow window (:attr:`windows`) the chains' positions also go into a
    :class:`WelfordState`; at the window's end its regularised variance becomes the
    new inverse mass, the estimate is emptied and the step-size adaptation
    restarts. The module's docstring says more, and why the step size is shared.

    With NUTS the trajectory length adapts by itself; with
    :class:`~ebmlib.samplers.HMC` ``n_leapfrog`` stays fixed, so the trajectory's
    length :math:`L\epsilon` follows the step size.

    Parameters
    ----------
    n_warmup : int
        Warm-up iterations, ``>= 1``.
    target_acceptance, gamma, t0, kappa : float
        The dual averaging's settings (:class:`DualAveraging`): Stan's 0.8, 0.05, 10, 0.75.
    adapt_mass : bool
        Tune the mass matrix too (default); ``False`` tunes the step size only,
        keeping the sampler's mass.
    initial_buffer, base_window, terminal_buffer : int, optional
        The windows of :func:`adaptation_windows`. By default Stan's initial
        buffer and first window for 1000 iterations, 75 and 25, scaled by
        ``n_warmup / 1000`` (rounded; the window at least 1), so that a shorter
        warm-up leaves the unit mass as early and gets as many windows; and a
        terminal buffer of ``min(50, n_warmup // 4)``: Stan's 50, not scaled,
        because the step size needs some tens of iterations to settle after
        its last restart whatever the warm-up's length (the average
        :math:`\bar x` still weighs the restart's first iterate, at ten times
        the step size, by 10% after 5 iterations, 3% after 10, 0.5% after 25).
        Pass 75, 25 and 50 for Stan's own schedule.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import NetworkEnergy
    >>> from ebmlib.samplers import HMC
    >>> warmup = WindowedAdaptation(n_warmup=200)
    >>> warmup.windows
    ((15, 20), (20, 30), (30, 50), (50, 150))
    >>> WindowedAdaptation(n_warmup=200, initial_buffer=75, base_window=25, terminal_buffer=50).windows
    ((75, 100), (100, 150))
    >>> model = NetworkEnergy(torch.nn.Linear(2, 1))
    >>> state = warmup.init(HMC(step_size=0.1), torch.zeros(4, 2))
    >>> state, info = warmup.step(HMC(step_size=0.1), model, state, generator=torch.Generator().manual_seed(0))
    >>> state.iteration, info.acceptance_rate.shape
    (1, torch.Size([4]))
    """

    def __init__(
        self,
        n_warmup: int,
        target_acceptance: float = 0.8,
        gamma: float = 0.05,
        t0: float = 10.0,
        kappa: float = 0.75,
        adapt_mass: bool = True,
        initial_buffer: int | None = None,
        base_window: int | None = None,
        terminal_buffer: int | None = None,
    ) -> None:
        self.n_warmup = check_count(n_warmup, "n_warmup")
        self.dual_averaging = DualAveraging(target_acceptance, gamma, t0, kappa)
        if not isinstance(adapt_mass, bool):
            raise TypeError(f"adapt_mass must be True or False, got {adapt_mass!r} ({type(adapt_mass).__name__})")
        self.adapt_mass = adapt_mass
        scale = self.n_warmup / 1000
        defaults = (round(STAN_WINDOWS[0] * scale), max(1, round(STAN_WINDOWS[1] * scale)),
                    min(STAN_WINDOWS[2], self.n_warmup // 4))
        given = (initial_buffer, base_window, terminal_buffer)
        buffers = [default if value is None else value for value, default in zip(given, defaults, strict=True)]
        windows = adaptation_windows(self.n_warmup, *buffers)
        self.windows: tuple[tuple[int, int], ...] = windows if adapt_mass else ()
        """The slow windows ``(start, end)``: the mass matrix is updated after iteration ``end - 1``."""
        self._window_ends = {end for _, end in self.windows}
        self._in_window = [any(start <= i < end for start, end in self.windows) for i in range(self.n_warmup)]

    def __repr__(self) -> str:
        tuning = self.dual_averaging
        return (f"WindowedAdaptation(n_warmup={self.n_warmup}, target_acceptance={tuning.target_acceptance}, "
                f"gamma={tuning.gamma}, t0={tuning.t0}, kappa={tuning.kappa}, adapt_mass={self.adapt_mass}, "
                f"windows={self.windows})")

    def init(self, sampler: AdaptableSampler, x: Tensor) -> WarmupState:
        """The warm-up's start: chains at ``x`` ``(B, *event_shape)``, the sampler's step size and mass (unit if it
        has none)."""
        check_adaptable(sampler)
        check_batch(x, "x")
        dimension = x[0].numel()
        if sampler.inverse_mass is None:
            inverse_mass = torch.ones(dimension, dtype=x.dtype, device=x.device)
        else:
            if len(sampler.inverse_mass) != dimension:
                raise ValueError(f"the sampler's inverse_mass has {len(sampler.inverse_mass)} entries, but chains of "
                                 f"shape {tuple(x.shape)} have {dimension} coordinates")
            inverse_mass = torch.tensor(sampler.inverse_mass, dtype=x.dtype, device=x.device)
        step_size = self.dual_averaging.init(torch.tensor(sampler.step_size, dtype=x.dtype, device=x.device))
        variance = WelfordState.empty(dimension, dtype=x.dtype, device=x.device)
        return WarmupState(ChainState(x.detach()), step_size, variance, inverse_mass, 0)

    def step(
        self,
        sampler: AdaptableSampler,
        model: nn.Module,
        state: WarmupState,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[WarmupState, StepInfo]:
        """One warm-up iteration: a sampler step, then the adaptation's updates. Reads no tensor on the host."""
        if state.iteration >= self.n_warmup:
            raise ValueError(f"the warm-up is over: it has run its {self.n_warmup} iterations")
        tuning = self.dual_averaging
        chains, info = sampler.transition(model, state.chains, y, generator,
                                          step_size=tuning.step_size(state.step_size), inverse_mass=state.inverse_mass)
        if info.acceptance_rate is None:
            raise TypeError(f"{type(sampler).__name__}'s StepInfo has no acceptance_rate, which the step-size "
                            "adaptation needs")
        step_size = tuning.update(state.step_size, info.acceptance_rate.mean())
        variance, inverse_mass = state.variance, state.inverse_mass
        if self._in_window[state.iteration]:
            variance = variance.update(chains.position.detach().flatten(1))
        if state.iteration + 1 in self._window_ends:
            inverse_mass = variance.regularized_variance().to(inverse_mass.dtype)
            variance = WelfordState.empty(inverse_mass.numel(), dtype=inverse_mass.dtype, device=inverse_mass.device)
            step_size = tuning.restart(step_size)
        return WarmupState(chains, step_size, variance, inverse_mass, state.iteration + 1), info

    def tuned_sampler(self, sampler: AdaptableSampler, state: WarmupState) -> Sampler:
        """``sampler`` configured with the tuned step size :math:`e^{\\bar x}` and the last mass estimated (the
        sampler's own if no window ended). Reads both on the host, once."""
        step_size = float(self.dual_averaging.final_step_size(state.step_size))
        inverse_mass = state.inverse_mass.tolist() if self.windows else sampler.inverse_mass
        return sampler.tuned(step_size, inverse_mass)

    def run(
        self,
        sampler: AdaptableSampler,
        model: nn.Module,
        x: Tensor,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> WarmupResult:
        """Run the whole warm-up from chains at ``x`` ``(B, *event_shape)`` (labels ``y`` ``(B,)``, optional).

        Returns
        -------
        WarmupResult
            The tuned sampler, the chains' state and per-iteration diagnostics.
        """
        check_adaptable(sampler)
        check_generator(generator)
        if y is not None and tuple(y.shape) != (x.shape[0],):
            raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        state = self.init(sampler, x)
        step_sizes: list[Tensor] = []
        acceptance: list[Tensor] = []
        for _ in range(self.n_warmup):
            step_sizes.append(self.dual_averaging.step_size(state.step_size))
            state, info = self.step(sampler, model, state, y, generator)
            acceptance.append(cast(Tensor, info.acceptance_rate).mean())  # step() raised if it were None
        diagnostics = {"step_size": torch.stack(step_sizes), "acceptance_rate": torch.stack(acceptance)}
        return WarmupResult(self.tuned_sampler(sampler, state), state.chains, diagnostics)


def check_adaptable(sampler: Any) -> None:
    """Raise ``TypeError`` unless ``sampler`` is a :class:`~ebmlib.samplers.Sampler` that is an
    :class:`AdaptableSampler`."""
    if not isinstance(sampler, Sampler) or not isinstance(sampler, AdaptableSampler):
        raise TypeError(
            "WindowedAdaptation tunes a sampler's step size and mass matrix, so it needs an ebmlib Sampler with "
            f"`step_size`, `inverse_mass`, `transition(...)` and `tuned(...)` (HMC, NUTS), got {type(sampler).__name__}"
        )
