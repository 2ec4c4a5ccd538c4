"""Pictures of a 2D energy: the landscape with samples on it, and traces of chains step by step.

Like :mod:`~ebmlib.evaluation.pictures`, every writer makes a PNG with matplotlib
(imported only when a picture is drawn, on its own canvas). The ``plot_*``
functions draw into a matplotlib axis you give, for figures of several panels
(the gallery puts four trained models side by side with them); the ``save_*``
functions write one figure. Energy histograms of data against samples against
noise are :func:`~ebmlib.evaluation.pictures.save_energy_histogram`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._plotting import PathLike, new_figure, save_figure

Bounds = tuple[float, float, float, float]


def energy_grid(
    model: nn.Module,
    bounds: Bounds = (-3.0, 3.0, -3.0, 3.0),
    resolution: int = 100,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Energies of a 2D model on a regular grid, and the log-density :math:`-E - \log Z` it implies there.

    :math:`\log Z` is the grid's Riemann sum :math:`\log \sum_{ij} e^{-E(x_{ij})} \Delta x \Delta y`.

    Parameters
    ----------
    model : nn.Module
        Maps ``(B, 2)`` points to ``(B,)`` energies.
    bounds : (float, float, float, float)
        ``(x_low, x_high, y_low, y_high)``.
    resolution : int
        Points per axis (at least 2).

    Returns
    -------
    axes : Tensor, shape ``(2, resolution)``
        The grid's x and y coordinates.
    energy : Tensor, shape ``(resolution, resolution)``
        ``energy[i, j]`` at ``(axes[0, j], axes[1, i])`` (rows are y, as images and ``contourf`` expect).
    log_density : Tensor, shape ``(resolution, resolution)``
        Normalised on the grid.

    Examples
    --------
    >>> class Bowl(nn.Module):
    ...     def forward(self, x):
    ...         return 0.5 * x.pow(2).sum(1)
    >>> axes, energy, log_density = energy_grid(Bowl(), (-5, 5, -5, 5), resolution=201)
    >>> energy.shape, round(float(log_density.max()), 3)  # the standard normal's log density at 0, -log(2 pi)
    (torch.Size([201, 201]), -1.838)
    """
    x_low, x_high, y_low, y_high = (float(b) for b in bounds)
    if not (x_low < x_high and y_low < y_high):
        raise ValueError(f"bounds must be (x_low, x_high, y_low, y_high) with low < high, got {bounds}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer of at least 2, got {resolution!r}")
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    xs = torch.linspace(x_low, x_high, resolution, device=device)
    ys = torch.linspace(y_low, y_high, resolution, device=device)
    points = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        energy = model(points).reshape(resolution, resolution).double()
    if tuple(energy.shape) != (resolution, resolution):  # pragma: no cover - reshape raises first
        raise ValueError("model must return one energy per point")
    cell = (xs[1] - xs[0]).double() * (ys[1] - ys[0]).double()
    log_density = -energy - torch.logsumexp(-energy.flatten(), 0) - cell.log()
    return torch.stack([xs, ys]).cpu(), energy.float().cpu(), log_density.float().cpu()


def plot_energy_landscape(
    axis: Any,
    model: nn.Module,
    samples: Tensor | None = None,
    bounds: Bounds = (-3.0, 3.0, -3.0, 3.0),
    resolution: int = 100,
    density: bool = False,
    levels: int = 30,
    title: str | None = None,
) -> Any:
    """Draw a 2D model's energy (or its density) as filled contours, with ``samples`` on top.

    Parameters
    ----------
    axis : matplotlib Axes
    model : nn.Module
        Maps ``(B, 2)`` points to ``(B,)`` energies.
    samples : Tensor, shape ``(N, 2)``, optional
        Points drawn as small red dots.
    bounds, resolution
        As for :func:`energy_grid`.
    density : bool
        Show :math:`e^{-E} / Z` (bright = likely) instead of :math:`E` (dark = low, clipped at
        its 95th percentile so the wells stay visible).
    levels : int
        Contour levels.
    title : str, optional

    Returns
    -------
    matplotlib Axes
        ``axis``.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> class Bowl(nn.Module):
    ...     def forward(self, x):
    ...         return 0.5 * x.pow(2).sum(1)
    >>> axis = plot_energy_landscape(Figure().add_subplot(), Bowl(), torch.randn(50, 2), title="bowl")
    >>> axis.get_title()
    'bowl'
    """
    if samples is not None and (samples.dim() != 2 or samples.shape[1] != 2):
        raise ValueError(f"samples must have shape (N, 2), got {tuple(samples.shape)}")
    axes, energy, log_density = energy_grid(model, bounds, resolution)
    if density:
        values, colours = log_density.exp(), "magma"
    else:
        values, colours = energy.clamp(max=float(torch.quantile(energy.flatten(), 0.95))), "viridis"
    axis.contourf(axes[0].numpy(), axes[1].numpy(), values.numpy(), levels=levels, cmap=colours)
    if samples is not None:
        points = samples.detach().float().cpu()
        axis.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=2, c="red", alpha=0.5, linewidths=0)
    axis.set_xlim(bounds[0], bounds[1])
    axis.set_ylim(bounds[2], bounds[3])
    axis.set_aspect("equal")
    if title is not None:
        axis.set_title(title)
    return axis


def save_energy_landscape(
    model: nn.Module,
    path: PathLike,
    samples: Tensor | None = None,
    bounds: Bounds = (-3.0, 3.0, -3.0, 3.0),
    resolution: int = 100,
    title: str | None = None,
) -> Path:
    """Write a PNG of a 2D model's energy and its density side by side, with ``samples`` on both.

    Parameters
    ----------
    model : nn.Module
    path : path-like
        Ends in ``.png``.
    samples : Tensor, shape ``(N, 2)``, optional
    bounds, resolution
        As for :func:`energy_grid`.
    title : str, optional

    Returns
    -------
    Path
        The PNG written: the energy's contour plot, with the samples on top.

    Examples
    --------
    >>> import tempfile
    >>> class Bowl(nn.Module):
    ...     def forward(self, x):
    ...         return 0.5 * x.pow(2).sum(1)
    >>> save_energy_landscape(Bowl(), f"{tempfile.mkdtemp()}/bowl.png", samples=torch.randn(100, 2)).name
    'bowl.png'
    """
    figure = new_figure(8.0, 4.2)
    left, right = figure.subplots(1, 2)
    plot_energy_landscape(left, model, samples, bounds, resolution, title="energy E(x)")
    plot_energy_landscape(right, model, samples, bounds, resolution, density=True, title="density exp(-E) / Z")
    if title is not None:
        figure.suptitle(title)
    return save_figure(figure, path)


def plot_chain_traces(axis: Any, trajectory: Tensor, coordinate: int = 0, n_chains: int = 8,
                      record_every: int = 1) -> Any:
    """Draw one coordinate of the first ``n_chains`` chains against the step: how chains move and mix.

    Parameters
    ----------
    axis : matplotlib Axes
    trajectory : Tensor, shape ``(T, N, D)``
        Chains seen at ``T`` times (e.g. :func:`~ebmlib.evaluation.trajectories.chain_trajectory`).
    coordinate : int
        Which of the ``D`` coordinates.
    n_chains : int
        How many chains (at most ``N``).
    record_every : int
        Steps between two records, for the step axis.

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> trajectory = torch.randn(50, 10, 2).cumsum(0)
    >>> len(plot_chain_traces(Figure().add_subplot(), trajectory, n_chains=4).lines)
    4
    """
    if trajectory.dim() != 3 or trajectory.shape[0] == 0 or trajectory.shape[1] == 0:
        raise ValueError(f"trajectory must have shape (T, N, D) with T, N > 0, got {tuple(trajectory.shape)}")
    if not 0 <= coordinate < trajectory.shape[2]:
        raise ValueError(f"coordinate must be in [0, {trajectory.shape[2]}), got {coordinate}")
    if n_chains < 1:
        raise ValueError(f"n_chains must be a positive number of chains, got {n_chains}")
    values = trajectory[:, :n_chains, coordinate].detach().float().cpu()
    steps = torch.arange(values.shape[0]) * record_every
    for chain in range(values.shape[1]):
        axis.plot(steps.numpy(), values[:, chain].numpy(), linewidth=0.8)
    axis.set_xlabel("step")
    axis.set_ylabel(f"x[{coordinate}]")
    return axis


def save_chain_traces(trajectory: Tensor, path: PathLike, n_chains: int = 8, record_every: int = 1,
                      title: str | None = None) -> Path:
    """Write a PNG of chain traces, one panel per coordinate (at most 4), ``n_chains`` chains each.

    Parameters
    ----------
    trajectory : Tensor, shape ``(T, N, D)``
    path : path-like
        Ends in ``.png``.
    n_chains : int
    record_every : int
        Steps between two records.
    title : str, optional

    Returns
    -------
    Path
        The PNG written: one trace per chain, in the plane of the first two coordinates.

    Examples
    --------
    >>> import tempfile
    >>> save_chain_traces(torch.randn(100, 6, 2).cumsum(0), f"{tempfile.mkdtemp()}/traces.png").name
    'traces.png'
    """
    if trajectory.dim() != 3:
        raise ValueError(f"trajectory must have shape (T, N, D), got {tuple(trajectory.shape)}")
    panels = min(trajectory.shape[2], 4)
    figure = new_figure(6.0, 1.9 * panels + 0.4)
    axes = figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    for coordinate, axis in enumerate(axes):
        plot_chain_traces(axis, trajectory, coordinate, n_chains, record_every)
        if coordinate < panels - 1:
            axis.set_xlabel("")
    if title is not None:
        figure.suptitle(title)
    return save_figure(figure, path)
