"""Convergence diagnostics of MCMC chains: per-chain effective sample size and split-R-hat."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def effective_sample_size(chains: Tensor) -> Tensor:
    r"""Effective sample size of each chain, from its autocorrelations (Geyer's initial monotone sequence).

    For a chain of :math:`N` draws with lag-:math:`t` autocorrelation :math:`\rho_t`
    (estimated by FFT, with the biased autocovariance :math:`\frac1N\sum_s (x_s-\bar x)(x_{s+t}-\bar x)`),

    .. math::

        \mathrm{ESS} = \frac{N}{\tau}, \qquad
        \tau = -1 + 2 \sum_{k=0}^{m} P_k, \qquad P_k = \rho_{2k} + \rho_{2k+1},

    where the sum stops before the first negative pair sum :math:`P_k` and each :math:`P_k`
    is replaced by the smallest one so far (Geyer 1992). :math:`\tau` is the integrated
    autocorrelation time; an AR(1) chain with coefficient :math:`\rho` has
    :math:`\tau = (1+\rho)/(1-\rho)`. As in Stan, :math:`\tau` is floored at
    :math:`1/\log_{10} N`, so an antithetic chain reports at most :math:`N \log_{10} N`.
    A chain that never moves has no defined ESS and reports ``nan``.

    The sum of the per-chain values is the ESS of all chains together only when they
    sample the same law (check :func:`split_r_hat` first).

    Parameters
    ----------
    chains : Tensor, shape ``(n_chains, n_draws, *param_shape)``
        Draws in chain order; ``n_draws >= 4``. A sampler's trajectory stacked as
        ``(n_draws, n_chains, ...)`` must be transposed first (``trajectory.transpose(0, 1)``).

    Returns
    -------
    Tensor, shape ``(n_chains, *param_shape)``
        ESS of each chain and coordinate, in ``chains``' floating dtype (computed in float64).

    Examples
    --------
    Independent draws have an ESS close to their number:

    >>> import torch
    >>> draws = torch.randn(2, 1000, generator=torch.Generator().manual_seed(0))
    >>> ess = effective_sample_size(draws)
    >>> ess.shape, bool(((ess > 900) & (ess < 1100)).all())
    (torch.Size([2]), True)
    """
    _check_chains(chains, "chains")
    x = chains.double()
    n = x.shape[1]
    centred = x - x.mean(dim=1, keepdim=True)
    n_fft = 2 ** math.ceil(math.log2(2 * n))
    spectrum = torch.fft.rfft(centred, n=n_fft, dim=1)
    autocovariance = torch.fft.irfft(spectrum * spectrum.conj(), n=n_fft, dim=1)[:, :n] / n
    autocorrelation = autocovariance / autocovariance[:, :1]
    n_pairs = n // 2
    pair_sums = autocorrelation[:, 0 : 2 * n_pairs : 2] + autocorrelation[:, 1 : 2 * n_pairs : 2]
    # Initial positive sequence: keep pairs up to the first negative one, then make it monotone.
    keep = (pair_sums > 0).long().cumprod(dim=1).bool()
    monotone = torch.cummin(pair_sums, dim=1).values
    tau = -1.0 + 2.0 * torch.where(keep, monotone, torch.zeros_like(monotone)).sum(dim=1)
    tau = tau.clamp(min=1.0 / math.log10(n))
    ess = torch.where(autocovariance[:, 0] > 0, n / tau, torch.full_like(tau, math.nan))
    return ess.to(chains.dtype if chains.is_floating_point() else torch.float64)


def split_r_hat(chains: Tensor, rank_normalised: bool = False) -> Tensor:
    r"""Split-:math:`\hat R`: whether several chains sample the same law (about 1) or not (above 1.01-1.1).

    Each chain is cut into its first and second half (the middle draw dropped when
    ``n_draws`` is odd), giving :math:`M` half-chains of :math:`n` draws with means
    :math:`\bar x_j` and variances :math:`s_j^2`. With :math:`W = \frac1M\sum_j s_j^2`
    and :math:`B/n = \frac{1}{M-1}\sum_j (\bar x_j - \bar x)^2` (Gelman et al., BDA3):

    .. math::

        \hat R = \sqrt{\frac{\frac{n-1}{n} W + B/n}{W}}.

    Splitting catches a chain that drifts as well as chains stuck in different
    places. With ``rank_normalised=True`` (Vehtari et al. 2021) the draws are first
    replaced by normal scores of their ranks over all chains,
    :math:`z = \Phi^{-1}\big((r - 3/8)/(S + 1/4)\big)` for rank :math:`r` among :math:`S`
    draws, and the result is the larger of that "bulk" :math:`\hat R` and the
    :math:`\hat R` of the rank-normalised folded draws :math:`|x - \operatorname{median}(x)|`
    (the "tail", which catches chains with equal locations but different scales).
    Ties get distinct ranks in draw order.

    Parameters
    ----------
    chains : Tensor, shape ``(n_chains, n_draws, *param_shape)``
        ``n_draws >= 4``; one chain is allowed (its two halves are compared).
    rank_normalised : bool
        Use Vehtari et al.'s rank-normalised, folded version.

    Returns
    -------
    Tensor, shape ``param_shape``
        :math:`\hat R` per coordinate, in ``chains``' floating dtype (computed in float64).

    Examples
    --------
    Four chains of the same law mix; shifting one of them by 3 shows:

    >>> import torch
    >>> chains = torch.randn(4, 500, generator=torch.Generator().manual_seed(0))
    >>> round(float(split_r_hat(chains)), 2)
    1.0
    >>> chains[0] += 3.0
    >>> bool(split_r_hat(chains) > 1.1), bool(split_r_hat(chains, rank_normalised=True) > 1.1)
    (True, True)
    """
    _check_chains(chains, "chains")
    x = chains.double()
    half = x.shape[1] // 2
    split = torch.cat([x[:, :half], x[:, x.shape[1] - half :]], dim=0)
    if not rank_normalised:
        r_hat = _r_hat(split)
    else:
        folded = (split - split.flatten(0, 1).median(dim=0).values).abs()
        r_hat = torch.maximum(_r_hat(_normal_scores(split)), _r_hat(_normal_scores(folded)))
    return r_hat.to(chains.dtype if chains.is_floating_point() else torch.float64)


def _r_hat(chains: Tensor) -> Tensor:
    """Plain :math:`\\hat R` of ``(n_chains, n, *param_shape)`` chains (no splitting)."""
    n = chains.shape[1]
    within = chains.var(dim=1).mean(dim=0)
    between_over_n = chains.mean(dim=1).var(dim=0)
    pooled = (n - 1) / n * within + between_over_n
    return (pooled / within).sqrt()


def _normal_scores(chains: Tensor) -> Tensor:
    """Ranks over all chains' draws, mapped to standard normal quantiles (Blom's offsets 3/8)."""
    flat = chains.flatten(0, 1)
    ranks = flat.argsort(dim=0).argsort(dim=0).double() + 1.0
    count = flat.shape[0]
    return torch.special.ndtri((ranks - 0.375) / (count + 0.25)).view_as(chains)


def _check_chains(chains: Tensor, name: str) -> None:
    if not isinstance(chains, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n_chains, n_draws, ...), got {type(chains).__name__}")
    if chains.dim() < 2 or chains.shape[0] < 1 or chains.shape[1] < 4:
        raise ValueError(
            f"{name} must have shape (n_chains, n_draws, *param_shape) with n_chains >= 1 and n_draws >= 4, "
            f"got {tuple(chains.shape)}"
        )
    if chains.is_complex():
        raise TypeError(f"{name} must be real, got dtype {chains.dtype}")
