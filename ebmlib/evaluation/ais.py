"""Annealed importance sampling: an estimate of an energy model's log-normaliser log Z, with its standard error."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..models.base import check_energy
from ..samplers.base import Sampler
from ..samplers.mala import MALA


class AISResult(NamedTuple):
    r"""What :func:`annealed_importance_sampling` found.

    Attributes
    ----------
    log_z : Tensor
        Scalar estimate of :math:`\log Z = \log \int e^{-E(x)}\,dx`.
    standard_error : Tensor
        Scalar delta-method standard error of ``log_z`` (see :func:`annealed_importance_sampling`).
    effective_sample_size : Tensor
        Scalar :math:`(\sum_i w_i)^2 / \sum_i w_i^2` of the final importance weights, between 1 and ``n_chains``.
    log_weights : Tensor, shape ``(n_chains,)``
        :math:`\log w_i`.
    samples : Tensor, shape ``(n_chains, *event_shape)``
        The chains' final positions: with weights :math:`w_i`, a weighted sample of :math:`e^{-E}/Z`.
    acceptance_rate : Tensor or None, shape ``(n_temperatures,)``
        Mean acceptance rate of the transitions at each temperature, when the sampler has an
        accept/reject test (MALA, HMC); ``None`` otherwise.

    Examples
    --------
    >>> import torch
    >>> result = AISResult(torch.tensor(1.0), torch.tensor(0.1), torch.tensor(50.0), torch.zeros(100),
    ...                    torch.zeros(100, 2), None)
    >>> float(result.log_z), float(result.standard_error)
    (1.0, 0.10000000149011612)
    """

    log_z: Tensor
    standard_error: Tensor
    effective_sample_size: Tensor
    log_weights: Tensor
    samples: Tensor
    acceptance_rate: Tensor | None


class AnnealedEnergy(nn.Module):
    r"""The energy on the path from a Gaussian to a model: :math:`E_\beta = (1 - \beta) E_0 + \beta E`.

    :math:`E_0(x) = \frac12 \sum_d \big((x_d - \mu_d)/\sigma_d\big)^2` is the energy of the
    base Gaussian :math:`\mathcal N(\mu, \operatorname{diag}\sigma^2)`. ``beta`` is a
    buffer that :func:`annealed_importance_sampling` moves from 0 to 1.

    Parameters
    ----------
    model : nn.Module
        Energy model :math:`E`, mapping ``(B, *event_shape)`` to ``(B,)``.
    base_mean, base_std : Tensor
        :math:`\mu` and :math:`\sigma > 0`, broadcastable to ``event_shape``.
    beta : float
        Starting :math:`\beta \in [0, 1]`.

    Examples
    --------
    >>> import torch
    >>> class Zero(torch.nn.Module):
    ...     def forward(self, x):
    ...         return torch.zeros(x.shape[0])
    >>> path = AnnealedEnergy(Zero(), torch.zeros(2), torch.ones(2), beta=0.25)
    >>> path(torch.tensor([[2.0, 0.0]]))  # 0.75 * (0.5 * 2^2) + 0.25 * 0
    tensor([1.5000])
    """

    beta: Tensor
    base_mean: Tensor
    base_std: Tensor

    def __init__(self, model: nn.Module, base_mean: Tensor, base_std: Tensor, beta: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("base_mean", base_mean)
        self.register_buffer("base_std", base_std)
        self.register_buffer("beta", torch.tensor(float(beta), dtype=base_mean.dtype, device=base_mean.device))

    def base_energy(self, x: Tensor) -> Tensor:
        r""":math:`E_0(x)`, shape ``(B,)``."""
        return 0.5 * ((x - self.base_mean) / self.base_std).pow(2).flatten(1).sum(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        r""":math:`E_\beta(x)`, shape ``(B,)``."""
        energy = self.model(x)
        check_energy(energy, x, type(self.model).__name__)
        return (1.0 - self.beta) * self.base_energy(x) + self.beta * energy


def annealed_importance_sampling(
    model: nn.Module,
    event_shape: tuple[int, ...],
    n_chains: int = 1000,
    betas: int | Tensor = 200,
    sampler: Sampler | None = None,
    n_steps: int = 1,
    base_mean: float | Tensor = 0.0,
    base_std: float | Tensor = 1.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> AISResult:
    r"""Estimate :math:`\log Z = \log \int e^{-E(x)}\,dx` by annealed importance sampling (Neal 2001).

    Chains start from the base Gaussian :math:`p_0 = \mathcal N(\mu, \operatorname{diag}\sigma^2)`,
    whose energy :math:`E_0(x) = \frac12\lVert (x - \mu)/\sigma \rVert^2` has the known
    normaliser :math:`\log Z_0 = \frac D2 \log 2\pi + \sum_d \log \sigma_d`, and are moved
    through :math:`E_{\beta} = (1 - \beta) E_0 + \beta E` for
    :math:`0 = \beta_0 < \beta_1 < \dots < \beta_K = 1`. Chain :math:`i` collects

    .. math::

        \log w_i = -\sum_{k=1}^{K} (\beta_k - \beta_{k-1})
            \big(E(x_i^{(k-1)}) - E_0(x_i^{(k-1)})\big),

    where :math:`x_i^{(k)}` follows from :math:`x_i^{(k-1)}` by ``n_steps`` steps of
    ``sampler`` on :math:`E_{\beta_k}`. Then :math:`\mathbb E[w_i] = Z / Z_0` and

    .. math::

        \widehat{\log Z} = \log Z_0 + \log \frac1N \sum_{i=1}^N w_i, \qquad
        \mathrm{SE} = \sqrt{\frac{1}{N} \cdot \frac{\frac{1}{N-1}\sum_i (w_i - \bar w)^2}{\bar w^2}},

    the standard error by the delta method (:math:`\operatorname{Var}\log\bar w \approx
    \operatorname{Var}\bar w / \bar w^2`). The estimate is unbiased for :math:`Z`, so
    :math:`\widehat{\log Z}` is biased low by about :math:`\mathrm{SE}^2/2`. The SE is
    only trustworthy when the weights' effective sample size
    :math:`(\sum w_i)^2/\sum w_i^2` is a sizeable fraction of :math:`N`; a small ESS means
    too few temperatures, too few transitions or a base far from the target (heavy-tailed
    weights make every estimate, SE included, too low). Independent runs with different
    generators give a check of the SE.

    The transitions must leave each :math:`e^{-E_\beta}` invariant for the estimate to be
    unbiased: the default MALA (``step_size=0.1``) does; plain Langevin only
    approximately. Each temperature costs ``n_steps`` sampler steps (two
    energy-and-gradient evaluations each for MALA) plus one energy evaluation.

    Parameters
    ----------
    model : nn.Module
        Energy model mapping ``(B, *event_shape)`` to energies ``(B,)``; its train/eval mode
        is left as it is, and its parameters get no gradient.
    event_shape : tuple of int
        Shape of one sample.
    n_chains : int
        :math:`N`, independent annealing runs.
    betas : int or Tensor
        An int :math:`K` gives the linear schedule ``torch.linspace(0, 1, K + 1)``;
        a 1-D tensor is used as given (non-decreasing, from 0 to 1).
    sampler : Sampler, optional
        Transition kernel; ``MALA(step_size=0.1)`` when ``None``. Pick a step size that
        suits the target's scale and check ``acceptance_rate``.
    n_steps : int
        Sampler steps per temperature.
    base_mean, base_std : float or Tensor
        :math:`\mu` and :math:`\sigma > 0`, scalars or broadcastable to ``event_shape``;
        a base that covers the target (wider rather than narrower) keeps the ESS high.
    dtype, device : optional
        Of the chains; default ``torch.get_default_dtype()`` and the CPU, or those of
        ``base_mean`` if it is a tensor.
    generator : torch.Generator, optional
        Source of every random draw (the base samples and the sampler's).

    Returns
    -------
    AISResult
        ``log_z``, ``standard_error``, ``effective_sample_size``, ``log_weights``,
        ``samples`` and ``acceptance_rate``.

    Examples
    --------
    :math:`E(x) = \frac12 \lVert x \rVert^2` in 2D has :math:`\log Z = \log 2\pi = 1.8379`:

    >>> import torch
    >>> class Quadratic(torch.nn.Module):
    ...     def forward(self, x):
    ...         return 0.5 * x.pow(2).sum(dim=1)
    >>> result = annealed_importance_sampling(
    ...     Quadratic(), (2,), n_chains=1000, betas=100, base_std=2.0, generator=torch.Generator().manual_seed(0))
    >>> f"log Z = {result.log_z:.3f} +- {result.standard_error:.3f}, ESS {result.effective_sample_size:.0f} of 1000"
    'log Z = 1.828 +- 0.018, ESS 760 of 1000'
    """
    if n_chains < 2:
        raise ValueError(f"n_chains must be at least 2, got {n_chains}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps}")
    if not all(isinstance(size, int) and size > 0 for size in event_shape):
        raise ValueError(f"event_shape must be a tuple of positive ints, got {event_shape}")
    if isinstance(base_mean, Tensor):
        dtype = base_mean.dtype if dtype is None else dtype
        device = base_mean.device if device is None else device
    dtype = torch.get_default_dtype() if dtype is None else dtype
    mean = torch.as_tensor(base_mean, dtype=dtype, device=device).expand(event_shape).clone()
    std = torch.as_tensor(base_std, dtype=dtype, device=device).expand(event_shape).clone()
    if not bool((std > 0).all()):
        raise ValueError(f"base_std must be positive, got {base_std}")
    schedule = _schedule(betas, dtype, mean.device)
    if sampler is None:
        sampler = MALA(step_size=0.1)

    path = AnnealedEnergy(model, mean, std)
    n_dims = mean.numel()
    log_z_base = 0.5 * n_dims * math.log(2 * math.pi) + std.log().sum()
    x = mean + std * torch.randn((n_chains, *event_shape), generator=generator, dtype=dtype, device=mean.device)
    log_weights = torch.zeros(n_chains, dtype=dtype, device=mean.device)
    acceptance: list[Tensor] = []
    for beta_previous, beta in zip(schedule[:-1], schedule[1:], strict=True):
        with torch.no_grad():
            energy = model(x)
            check_energy(energy, x, type(model).__name__)
            log_weights = log_weights - (beta - beta_previous) * (energy.to(dtype) - path.base_energy(x))
        path.beta.copy_(beta)
        x, diagnostics = sampler.sample(path, x, n_steps=n_steps, generator=generator, return_diagnostics=True)
        if "acceptance_rate" in diagnostics:
            acceptance.append(diagnostics["acceptance_rate"].mean())

    log_mean_weight = torch.logsumexp(log_weights, dim=0) - math.log(n_chains)
    normalised = (log_weights - log_weights.max()).exp()  # w_i / max w, in (0, 1]
    relative_variance = normalised.var() / normalised.mean().pow(2)
    return AISResult(
        log_z=log_z_base + log_mean_weight,
        standard_error=(relative_variance / n_chains).sqrt(),
        effective_sample_size=normalised.sum().pow(2) / normalised.pow(2).sum(),
        log_weights=log_weights,
        samples=x,
        acceptance_rate=torch.stack(acceptance) if acceptance else None,
    )


def _schedule(betas: int | Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The inverse temperatures ``0 = beta_0 <= ... <= beta_K = 1`` as a 1-D tensor."""
    if isinstance(betas, int):
        if betas < 1:
            raise ValueError(f"betas must be a positive number of temperatures or a tensor, got {betas}")
        return torch.linspace(0.0, 1.0, betas + 1, dtype=dtype, device=device)
    if not isinstance(betas, Tensor) or betas.dim() != 1 or betas.numel() < 2:
        got = tuple(betas.shape) if isinstance(betas, Tensor) else type(betas).__name__
        raise ValueError(f"betas must be an int or a 1-D tensor of at least 2 values, got {got}")
    schedule = betas.to(dtype=dtype, device=device)
    increasing = bool((schedule[1:] >= schedule[:-1]).all())
    if float(schedule[0]) != 0.0 or float(schedule[-1]) != 1.0 or not increasing:
        raise ValueError(
            f"betas must be non-decreasing from 0 to 1, got {float(betas[0]):.4g} ... {float(betas[-1]):.4g}"
            + ("" if increasing else " with a decrease")
        )
    return schedule
