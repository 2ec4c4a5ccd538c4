"""Pictures of an energy model: image grids, chains from noise to samples, energy histograms, training curves.

Every writer makes a PNG with matplotlib (the ``vision`` extra), imported only
when a picture is drawn. Figures are drawn on their own canvas, so the pyplot
backend of a notebook or script is left as it was. Images are tensors
``(N, C, H, W)`` with ``C`` = 1 (grey) or 3 (RGB), values in ``value_range``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ._plotting import PathLike, matplotlib_module, new_figure, prepare_png, save_figure


def image_grid(
    images: Tensor,
    nrow: int = 10,
    padding: int = 2,
    pad_value: float = 0.5,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> Tensor:
    r"""Tile images into one picture, ``nrow`` images per row, values mapped to ``[0, 1]``.

    A pixel :math:`v` becomes :math:`\operatorname{clamp}((v - a) / (b - a), 0, 1)` for
    ``value_range`` :math:`(a, b)`; tiles are separated by ``padding`` pixels of ``pad_value``.

    Parameters
    ----------
    images : Tensor, shape ``(N, C, H, W)``
        ``C`` is 1 or 3.
    nrow : int
        Images per row of the grid; the last row may be shorter.
    padding : int
        Pixels between tiles and around the border.
    pad_value : float
        Value of the padding, in ``[0, 1]`` (0.5: grey).
    value_range : (float, float)
        The values shown as black and white.

    Returns
    -------
    Tensor, shape ``(rows * (H + padding) + padding, columns * (W + padding) + padding, C)``
        On the CPU, float32, values in ``[0, 1]``, with ``rows = ceil(N / nrow)``
        and ``columns = min(N, nrow)``.

    Examples
    --------
    >>> image_grid(torch.zeros(12, 1, 28, 28), nrow=5).shape  # 3 rows of 5
    torch.Size([92, 152, 1])
    """
    _check_images(images, "images")
    low, high = value_range
    if not low < high:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    n, channels, height, width = images.shape
    columns, rows = min(n, nrow), math.ceil(n / nrow)
    scaled = ((images.detach().float().cpu() - low) / (high - low)).clamp(0, 1)
    grid = torch.full(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels), float(pad_value)
    )
    for i, image in enumerate(scaled):
        top = padding + (i // nrow) * (height + padding)
        left = padding + (i % nrow) * (width + padding)
        grid[top : top + height, left : left + width] = image.permute(1, 2, 0)
    return grid


def save_image_grid(
    images: Tensor,
    path: PathLike,
    nrow: int = 10,
    padding: int = 2,
    pad_value: float = 0.5,
    value_range: tuple[float, float] = (-1.0, 1.0),
    scale: int = 1,
) -> Path:
    """Write :func:`image_grid` ``(images, ...)`` as a PNG of exactly its size times ``scale``.

    Parameters
    ----------
    images : Tensor, shape ``(N, C, H, W)``
    path : path-like
        The PNG; its folder is created if missing.
    nrow, padding, pad_value, value_range
        As in :func:`image_grid`.
    scale : int
        Every pixel drawn as ``scale x scale`` pixels.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile, matplotlib.image
    >>> folder = tempfile.mkdtemp()
    >>> path = save_image_grid(torch.zeros(20, 1, 28, 28), f"{folder}/grid.png", nrow=10)
    >>> matplotlib.image.imread(path).shape[:2]  # 2 rows, 10 columns of 28 + 2 pixels, + 2
    (62, 302)
    """
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    grid = image_grid(images, nrow, padding, pad_value, value_range)
    grid = grid.repeat_interleave(scale, dim=0).repeat_interleave(scale, dim=1)
    path = prepare_png(path)
    pixels = grid.expand(-1, -1, 3) if grid.shape[2] == 1 else grid
    matplotlib_module()
    from matplotlib import image as mpimg

    mpimg.imsave(path, pixels.numpy(), vmin=0.0, vmax=1.0)
    return path


def save_chain_evolution(
    trajectory: Tensor,
    path: PathLike,
    steps: Sequence[int] | None = None,
    row_labels: Sequence[str] | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    title: str | None = None,
) -> Path:
    """Draw chains from their start to their end: one row per chain, one column per snapshot.

    With chains started from uniform noise and one chain per class, this is the
    picture the method is known for: noise that sharpens, step by step, into a digit.

    Parameters
    ----------
    trajectory : Tensor, shape ``(T, B, C, H, W)``
        Snapshots of ``B`` chains, the start first (as
        :func:`~ebmlib.evaluation.trajectories.chain_trajectory` returns).
    path : path-like
    steps : sequence of int, optional
        The step of each snapshot, shown above its column (length ``T``).
    row_labels : sequence of str, optional
        A name for each chain (e.g. its class), shown left of its row (length ``B``).
    value_range : (float, float)
    title : str, optional

    Returns
    -------
    Path
        The PNG written: one row per chain, one column per recorded step.

    Examples
    --------
    >>> import tempfile
    >>> path = save_chain_evolution(torch.zeros(5, 3, 1, 28, 28), f"{tempfile.mkdtemp()}/chains.png",
    ...                             steps=[0, 8, 16, 24, 32], row_labels=["0", "1", "2"])
    >>> path.name
    'chains.png'
    """
    if trajectory.dim() != 5:
        raise ValueError(f"trajectory must have shape (T, B, C, H, W), got {tuple(trajectory.shape)}")
    n_snapshots, n_chains = trajectory.shape[:2]
    _check_length(steps, n_snapshots, "steps", "snapshots (trajectory.shape[0])")
    _check_length(row_labels, n_chains, "row_labels", "chains (trajectory.shape[1])")
    height, width = trajectory.shape[-2:]
    padding = 2
    grid = image_grid(trajectory.transpose(0, 1).flatten(0, 1), n_snapshots, padding, 1.0, value_range)
    figure = new_figure(0.55 * n_snapshots + 0.8, 0.55 * n_chains + 0.9)
    axis = figure.add_subplot()
    axis.imshow(grid.expand(-1, -1, 3).numpy() if grid.shape[2] == 1 else grid.numpy())
    axis.set_xticks([padding + width / 2 + i * (width + padding) for i in range(n_snapshots)])
    axis.set_xticklabels([str(s) for s in steps] if steps is not None else [""] * n_snapshots, fontsize=7)
    axis.set_yticks([padding + height / 2 + i * (height + padding) for i in range(n_chains)])
    axis.set_yticklabels(list(row_labels) if row_labels is not None else [""] * n_chains, fontsize=8)
    axis.tick_params(length=0)
    if steps is not None:
        axis.set_xlabel("sampler step")
    for spine in axis.spines.values():
        spine.set_visible(False)
    if title:
        axis.set_title(title, fontsize=9)
    return save_figure(figure, path)


def save_sample_comparison(
    panels: Mapping[str, Tensor],
    path: PathLike,
    nrow: int = 10,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> Path:
    """Image grids side by side under their titles, e.g. samples from noise beside samples from the buffer.

    Parameters
    ----------
    panels : mapping of str to Tensor, each of shape ``(N_i, C, H, W)``
        Title -> images (the same ``C, H, W`` for every panel).
    path : path-like
    nrow : int
        Images per row in every grid.
    value_range : (float, float)

    Returns
    -------
    Path
        The PNG written: one grid per panel, side by side.

    Examples
    --------
    >>> import tempfile
    >>> panels = {"from noise": torch.zeros(20, 1, 28, 28), "from the buffer": torch.ones(20, 1, 28, 28)}
    >>> save_sample_comparison(panels, f"{tempfile.mkdtemp()}/compare.png").suffix
    '.png'
    """
    if not panels:
        raise ValueError("panels must name at least one set of images, got an empty mapping")
    grids = {title: image_grid(images, nrow, 2, 0.5, value_range) for title, images in panels.items()}
    shapes = {tuple(images.shape[1:]) for images in panels.values()}
    if len(shapes) > 1:
        raise ValueError(f"every panel must hold images of one shape (C, H, W), got {sorted(shapes)}")
    tallest = max(grid.shape[0] for grid in grids.values())
    widest = max(grid.shape[1] for grid in grids.values())
    figure = new_figure(len(grids) * (widest / 60 + 0.3), tallest / 60 + 0.6)
    for i, (title, grid) in enumerate(grids.items(), start=1):
        axis = figure.add_subplot(1, len(grids), i)
        axis.imshow(grid.expand(-1, -1, 3).numpy() if grid.shape[2] == 1 else grid.numpy())
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    return save_figure(figure, path)


def save_energy_histogram(
    energies: Mapping[str, Tensor],
    path: PathLike,
    bins: int = 60,
    title: str | None = None,
) -> Path:
    """Overlaid histograms of energies, one per set of inputs (test digits, samples, noise, ...).

    A model of the data puts test digits and good samples at low energy and
    out-of-distribution inputs (uniform noise, inverted or flipped digits) at
    high energy; the histograms show where each set falls. The bins are shared
    and span every finite value; each histogram is normalised to unit area.

    Parameters
    ----------
    energies : mapping of str to Tensor, each of shape ``(N_i,)``
        Set name -> its energies :math:`E(x)`.
    path : path-like
    bins : int
    title : str, optional

    Returns
    -------
    Path
        The PNG written: the histograms on shared axes.

    Raises
    ------
    ValueError
        When a set is empty or holds NaN/Inf (named in the message).

    Examples
    --------
    >>> import tempfile
    >>> g = torch.Generator().manual_seed(0)
    >>> sets = {"test digits": torch.randn(100, generator=g), "uniform noise": 5 + torch.randn(100, generator=g)}
    >>> save_energy_histogram(sets, f"{tempfile.mkdtemp()}/energies.png").name
    'energies.png'
    """
    if not energies:
        raise ValueError("energies must name at least one set, got an empty mapping")
    if bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    values = {}
    for name, energy in energies.items():
        flat = energy.detach().double().cpu().flatten()
        if flat.numel() == 0 or not bool(torch.isfinite(flat).all()):
            raise ValueError(f"energies[{name!r}] must be a non-empty set of finite values, got {flat.numel()} "
                             f"values of which {int((~torch.isfinite(flat)).sum())} are NaN or Inf")
        values[name] = flat.numpy()
    low = min(float(v.min()) for v in values.values())
    high = max(float(v.max()) for v in values.values())
    if high == low:
        low, high = low - 0.5, high + 0.5
    edges = torch.linspace(low, high, bins + 1).numpy()
    figure = new_figure(6.0, 3.6)
    axis = figure.add_subplot()
    for i, (name, v) in enumerate(values.items()):
        colour = f"C{i % 10}"
        axis.hist(v, bins=edges, density=True, histtype="stepfilled", alpha=0.3, color=colour)
        axis.hist(v, bins=edges, density=True, histtype="step", color=colour, label=f"{name} ({len(v)})")
    axis.set_xlabel("energy E(x)  (lower = more likely)")
    axis.set_ylabel("density")
    axis.legend(fontsize=7)
    if title:
        axis.set_title(title, fontsize=9)
    return save_figure(figure, path)


def training_curve_panels(keys: Sequence[str]) -> dict[str, list[str]]:
    """Group metric names into panels: loss terms, accuracies, energies, energy gaps.

    ``loss`` and ``loss/*`` go to ``"loss terms"``, names ending in ``accuracy``
    to ``"accuracy"``, in ``_energy`` to ``"energies"`` and in ``energy_gap``
    to ``"energy gap"``; other names are left out and empty panels dropped.

    Parameters
    ----------
    keys : sequence of str
        Metric names, e.g. the keys of a training history row.

    Returns
    -------
    dict of str to list of str
        Panel title -> metric names, in the order given.

    Examples
    --------
    >>> training_curve_panels(["step", "loss", "loss/p_y_given_x", "p_y_given_x/accuracy", "lr"])
    {'loss terms': ['loss', 'loss/p_y_given_x'], 'accuracy': ['p_y_given_x/accuracy']}
    """
    rules = {
        "loss terms": lambda k: k == "loss" or k.startswith("loss/"),
        "accuracy": lambda k: k.endswith("accuracy"),
        "energies": lambda k: k.endswith("_energy"),
        "energy gap": lambda k: k.endswith("energy_gap"),
    }
    panels = {title: [k for k in keys if rule(k)] for title, rule in rules.items()}
    return {title: names for title, names in panels.items() if names}


def save_training_curves(
    history: Sequence[Mapping[str, float]],
    path: PathLike,
    panels: Mapping[str, Sequence[str]] | None = None,
    x: str = "step",
) -> Path:
    """Plot metrics against the step, one panel per group of metrics.

    Parameters
    ----------
    history : sequence of dict
        One row per metric read, e.g. ``Trainer.history``; every row has the key ``x``.
        A metric missing from a row is drawn as a gap.
    path : path-like
    panels : mapping of str to sequence of str, optional
        Panel title -> metric names; default :func:`training_curve_panels` of
        every key in ``history``.
    x : str
        The key on the horizontal axis.

    Returns
    -------
    Path
        The PNG written: one panel per metric.

    Examples
    --------
    >>> import tempfile
    >>> history = [{"step": s, "loss": 1 / s, "p_y_given_x/accuracy": 1 - 1 / s} for s in range(1, 6)]
    >>> save_training_curves(history, f"{tempfile.mkdtemp()}/curves.png").name
    'curves.png'
    """
    if not history:
        raise ValueError("history must hold at least one row of metrics, got none")
    missing = [i for i, row in enumerate(history) if x not in row]
    if missing:
        raise ValueError(f"every history row needs the key {x!r}; rows {missing[:5]} lack it")
    keys = list(dict.fromkeys(k for row in history for k in row))
    chosen = training_curve_panels(keys) if panels is None else {t: list(k) for t, k in panels.items()}
    if not chosen:
        raise ValueError(f"no metric to plot: none of {keys} belongs to a panel; pass panels=")
    unknown = sorted({k for names in chosen.values() for k in names} - set(keys))
    if unknown:
        raise ValueError(f"panels name metrics that no history row has: {unknown}")
    steps = [float(row[x]) for row in history]
    figure = new_figure(4.0 * len(chosen), 3.2)
    for i, (title, names) in enumerate(chosen.items(), start=1):
        axis = figure.add_subplot(1, len(chosen), i)
        for name in names:
            values = [float(row.get(name, math.nan)) for row in history]
            axis.plot(steps, values, label=name, marker="." if len(steps) < 30 else None)
        axis.set_title(title)
        axis.set_xlabel(x)
        axis.legend(fontsize=7)
    return save_figure(figure, path)


# ------------------------------------------------------------------------------------------------ helpers
def _check_images(images: Tensor, name: str) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[0] == 0 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a non-empty batch (N, C, H, W) with C = 1 or 3, got {shape}")


def _check_length(values: Sequence[Any] | None, expected: int, name: str, what: str) -> None:
    if values is not None and len(values) != expected:
        raise ValueError(f"{name} must give one entry per {what}: expected {expected}, got {len(values)}")
