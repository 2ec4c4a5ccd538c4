"""Shared helpers of the scripts that draw the documentation's pictures (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

GENERATED = Path(__file__).resolve().parent.parent / "_static" / "generated"


@torch.no_grad()
def density_image(model: nn.Module, limit: float = 3.0, resolution: int = 200) -> Tensor:
    """``exp(-E(x))`` on a ``resolution x resolution`` grid over ``[-limit, limit]^2``, scaled to max 1."""
    axis = torch.linspace(-limit, limit, resolution)
    grid_x, grid_y = torch.meshgrid(axis, axis, indexing="xy")
    energy = model(torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1)).view(resolution, resolution)
    return (energy.min() - energy).exp()


def show_density(ax: plt.Axes, model: nn.Module, title: str, limit: float = 3.0, log: bool = False) -> None:
    """Draw the model's unnormalised density (or, with ``log``, its log ``-E(x)``) on ``ax``."""
    density = density_image(model, limit)
    image = density.log() if log else density
    ax.imshow(image, origin="lower", extent=(-limit, limit, -limit, limit), cmap="magma",
              vmin=float(image.quantile(0.01)), vmax=float(image.quantile(0.99)))
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def show_points(ax: plt.Axes, points: Tensor, title: str, limit: float = 3.0, color: str = "tab:blue") -> None:
    """Scatter 2D points on ``ax`` with a square ``[-limit, limit]^2`` frame."""
    ax.scatter(points[:, 0], points[:, 1], s=1.0, alpha=0.5, color=color)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def save(fig: plt.Figure, name: str) -> Path:
    """Write ``fig`` to ``docs/_static/generated/<name>`` and close it."""
    GENERATED.mkdir(parents=True, exist_ok=True)
    path = GENERATED / name
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")
    return path
