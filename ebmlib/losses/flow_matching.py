r"""Conditional flow matching (Lipman et al., 2023; Tong et al., 2023) on straight paths from noise to data.

A velocity field :math:`v` is regressed on the velocity :math:`x_1 - x_0` of the straight
path :math:`x_t = (1 - t) x_0 + t x_1` between a source point :math:`x_0` (noise) and a data
point :math:`x_1`, at a time :math:`t \sim \mathcal{U}[0, 1]`. The pairs come from a
*coupling* of the two batches: independent (Lipman et al.) or a mini-batch optimal transport
plan (Tong et al., *Improving and generalizing flow-based generative models with minibatch
optimal transport*, 2023), whose paths cross less, so that a field that does not depend on
:math:`t` (energy matching's :math:`-\nabla_x E`) can follow them.

The loss (:class:`FlowMatching`) reads the velocities a recipe computed
(:class:`FlowVelocities`); :func:`linear_paths` draws the points, times and targets, and
:func:`ot_pairing` the transport pairs, for any velocity model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_count, check_generator, check_positive
from .base import EnergyBatch, Loss, LossInput

_ABSORB_EVERY = 10  # Sinkhorn iterations between two absorptions of the scalings into the potentials

COUPLINGS = ("independent", "ot")
"""How :func:`linear_paths` pairs source and data points: ``"independent"`` as given, ``"ot"`` by
:func:`ot_pairing`."""


@dataclass(frozen=True)
class FlowVelocities(LossInput):
    r"""A velocity model's output on points of straight paths, and the paths' velocities.

    Attributes
    ----------
    velocity : Tensor, shape ``(B, *event_shape)``
        :math:`v_\theta(x_t, t)`, or :math:`-\nabla_x E_\theta(x_t)` for an energy
        (energy matching), differentiable in the parameters.
    target : Tensor, shape ``(B, *event_shape)``
        :math:`x_1 - x_0`, the velocity of the path through :math:`x_t`.

    Examples
    --------
    >>> import torch
    >>> FlowVelocities(velocity=torch.zeros(4, 2), target=torch.ones(4, 2)).target.shape
    torch.Size([4, 2])
    """

    velocity: Tensor
    target: Tensor


class FlowMatching(Loss):
    r"""Conditional flow matching: the squared error of a velocity field against the paths' velocities.

    .. math::

        \mathcal{L} = \frac{1}{B} \sum_{i=1}^{B} \big\lVert v_\theta(x_{t_i}, t_i) - (x_{1,i} - x_{0,i}) \big\rVert^2,
        \qquad x_t = (1 - t)\, x_0 + t\, x_1,

    summed over the event dimensions, averaged over the batch. Its minimiser is the
    *marginal* velocity :math:`u_t(x) = \mathbb{E}[x_1 - x_0 \mid x_t = x]`, whose flow
    carries the source law at :math:`t = 0` to the data's at :math:`t = 1` (Lipman et al.,
    2023). The points and targets come from :func:`linear_paths` (through a recipe:
    :class:`~ebmlib.recipes.EnergyMatchingEBM` computes
    :math:`v = -\nabla_x E_\theta(x_t)`, a field that does not depend on :math:`t`).

    Metrics: ``velocity_norm``, the mean :math:`\lVert v_\theta \rVert`.

    Examples
    --------
    A velocity that equals the target gives zero loss; a zero velocity gives the mean squared norm of the target:

    >>> import torch
    >>> from ebmlib.losses import EnergyBatch
    >>> target = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    >>> float(FlowMatching()(EnergyBatch(FlowVelocities(target, target)))[0])
    0.0
    >>> float(FlowMatching()(EnergyBatch(FlowVelocities(torch.zeros(2, 2), target)))[0])
    13.0
    """

    def needs(self) -> frozenset[type[LossInput]]:
        return frozenset({FlowVelocities})

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        inputs = batch[FlowVelocities]
        residual = (inputs.velocity - inputs.target).flatten(1)
        loss = residual.pow(2).sum(1).mean()
        return loss, {"velocity_norm": inputs.velocity.detach().flatten(1).norm(dim=1).mean()}


def ot_pairing(
    x0: Tensor,
    x1: Tensor,
    generator: torch.Generator | None = None,
    regularization: float = 0.05,
    n_iterations: int = 30,
) -> Tensor:
    r"""For each row of ``x1``, a row of ``x0`` drawn from an entropic optimal-transport plan between the batches.

    The plan :math:`P` minimises :math:`\sum_{ij} P_{ij} C_{ij} - \varepsilon H(P)` over the
    couplings of the uniform laws on the two batches, with the cost
    :math:`C_{ij} = \lVert x_{0,i} - x_{1,j} \rVert^2` and
    :math:`\varepsilon` = ``regularization`` times the mean cost (so the setting does not
    depend on the data's scale). It is computed by ``n_iterations`` Sinkhorn iterations
    (scalings absorbed into log-domain potentials every 10 iterations, so nothing
    underflows), which end with the data side's marginal exact; then, for each :math:`j`, a
    source index :math:`i \sim P_{\cdot j} / P_{\cdot j}.\mathrm{sum}()` is drawn (Tong et
    al. draw the pairs from the plan too). Every data point keeps one partner; a source point
    may be drawn twice or not at all, and is drawn once on average.

    It is an approximation of the exact assignment (one fixed-size loop, no host
    synchronisation, no dependency): with the defaults, on 128 standard-normal points against
    128 of :func:`~ebmlib.data.toy.eight_gaussians`, the plan costs about 1.15 times the exact
    assignment (independent pairs: about 6 times) and its source marginal is uniform within 2%.
    A smaller ``regularization`` comes closer to the exact assignment and needs more iterations.
    Cost: ``2 * n_iterations`` matrix-vector products and ``n_iterations / 10 + 1``
    exponentials of an ``(N, M)`` matrix.

    Parameters
    ----------
    x0 : Tensor, shape ``(N, *event_shape)``
        Source points (noise).
    x1 : Tensor, shape ``(M, *event_shape)``
        Data points.
    generator : torch.Generator, optional
        Source of the draws from the plan.
    regularization : float
        :math:`\varepsilon` relative to the mean cost, ``> 0``.
    n_iterations : int
        Sinkhorn iterations, ``>= 1``.

    Returns
    -------
    Tensor of int64, shape ``(M,)``
        ``index[j]``: the row of ``x0`` paired with ``x1[j]``.

    Examples
    --------
    Points shuffled are paired back with themselves (with a small ``regularization``:
    the defaults would swap a neighbour now and then):

    >>> import torch
    >>> grid = torch.cartesian_prod(torch.arange(4.0), torch.arange(4.0))
    >>> order = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    >>> index = ot_pairing(grid[order], grid, torch.Generator().manual_seed(1), regularization=0.01, n_iterations=50)
    >>> torch.equal(grid[order][index], grid)
    True
    """
    check_generator(generator)
    check_positive(regularization, "regularization")
    check_count(n_iterations, "n_iterations")
    if x0.dim() < 1 or x1.dim() < 1 or x0.shape[1:] != x1.shape[1:] or x0.shape[0] == 0 or x1.shape[0] == 0:
        raise ValueError(f"x0 and x1 must be non-empty batches of the same event shape, got {tuple(x0.shape)} and "
                         f"{tuple(x1.shape)}")
    source, data = x0.detach().flatten(1), x1.detach().flatten(1)
    cost = torch.cdist(source, data).pow(2)
    epsilon = regularization * cost.mean().clamp_min(torch.finfo(cost.dtype).tiny)
    n, m = cost.shape
    # Potentials f, g (in cost units) of the plan P = exp((f_i + g_j - C_ij) / epsilon); they start where every row
    # and every column has an entry exp(0) = 1, so no row or column of the kernel below underflows to zero.
    f = cost.amin(dim=1)
    g = (cost - f.unsqueeze(1)).amin(dim=0)
    done = 0
    while done < n_iterations:  # Sinkhorn's scalings u, v in the kernel domain, absorbed into f, g every few steps
        steps = min(_ABSORB_EVERY, n_iterations - done)
        kernel = ((f.unsqueeze(1) + g - cost) / epsilon).exp()
        v = torch.ones_like(g)
        for _ in range(steps):
            u = (1.0 / n) / (kernel @ v)
            v = (1.0 / m) / (kernel.T @ u)
        f, g = f + epsilon * u.log(), g + epsilon * v.log()
        done += steps
    columns = ((f.unsqueeze(1) - cost) / epsilon).T.softmax(dim=1)  # row j: P[:, j] / P[:, j].sum()
    return torch.multinomial(columns, 1, generator=generator).squeeze(1)


def linear_paths(
    x0: Tensor,
    x1: Tensor,
    coupling: str = "independent",
    generator: torch.Generator | None = None,
    regularization: float = 0.05,
    n_iterations: int = 30,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Points, times and velocities of straight paths from source points to data points.

    The pairs :math:`(x_0, x_1)` are the rows of ``x0`` and ``x1`` in order
    (``coupling="independent"``, for independent draws) or, with ``"ot"``, each data
    point with a source point drawn by :func:`ot_pairing` (``regularization`` and
    ``n_iterations`` are its settings). Then :math:`t \sim \mathcal{U}[0, 1]` per pair and

    .. math::

        x_t = (1 - t)\, x_0 + t\, x_1, \qquad \dot x_t = x_1 - x_0.

    Parameters
    ----------
    x0 : Tensor, shape ``(B, *event_shape)``
        Source points (e.g. Gaussian noise).
    x1 : Tensor, shape ``(B, *event_shape)``
        Data points.
    coupling : {"independent", "ot"}
    generator : torch.Generator, optional
        Source of the times (and of the transport pairs).
    regularization, n_iterations
        Settings of :func:`ot_pairing`, for ``coupling="ot"``.

    Returns
    -------
    (Tensor, Tensor, Tensor)
        :math:`x_t` ``(B, *event_shape)``, :math:`t` ``(B,)`` and :math:`x_1 - x_0`
        ``(B, *event_shape)``, all detached, in ``x1``'s dtype.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x0, x1 = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g) + 3
    >>> xt, t, target = linear_paths(x0, x1, "ot", generator=g)
    >>> xt.shape, t.shape, target.shape
    (torch.Size([8, 2]), torch.Size([8]), torch.Size([8, 2]))
    """
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape (B, *event_shape), got {tuple(x0.shape)} and "
                         f"{tuple(x1.shape)}")
    x0, x1 = x0.detach().to(x1.dtype), x1.detach()
    if coupling == "ot":
        x0 = x0[ot_pairing(x0, x1, generator, regularization, n_iterations)]
    else:
        check_generator(generator)
    t = torch.rand(x1.shape[0], generator=generator, device=x1.device, dtype=x1.dtype)
    t_b = t.view(-1, *([1] * (x1.dim() - 1)))
    return (1 - t_b) * x0 + t_b * x1, t, x1 - x0
