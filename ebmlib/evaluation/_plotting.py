"""Plotting helpers shared by :mod:`~ebmlib.evaluation.pictures` and :mod:`~ebmlib.evaluation.landscapes`.

matplotlib (the ``vision`` extra) is imported only when a figure is made; figures are drawn on
their own canvas, so a notebook's or script's pyplot backend is left as it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike[str]


def matplotlib_module() -> Any:
    """matplotlib itself, or an ``ImportError`` that names the extra to install."""
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError('ebmlib.evaluation\'s pictures need matplotlib: pip install "ebmlib[vision]"') from error
    return matplotlib


def new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches at 100 dpi, laid out tightly."""
    matplotlib_module()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="tight")


def save_figure(figure: Any, path: PathLike) -> Path:
    """Write ``figure`` to the PNG file ``path`` (its folder created if missing); return the path."""
    path = prepare_png(path)
    figure.savefig(path)
    return path


def prepare_png(path: PathLike) -> Path:
    """``path`` as a ``Path`` ending in ``.png``, its folder created; ``ValueError`` for another suffix."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
