"""A progress bar that shows the metric means of every refresh, labelled from the metric names alone."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

from .callbacks import Callback, TrainerView

__all__ = ["ProgressBar", "short_labels"]

DEFAULT_SHOWN = ("loss", "loss/*", "*accuracy", "*energy_gap")
"""Glob patterns of the metrics a :class:`ProgressBar` shows by default."""


class ProgressBar(Callback):
    """A tqdm bar over the training steps (process 0 only), with the window means of chosen metrics.

    Metrics are chosen by glob patterns over their names and labelled by
    :func:`~ebmlib.training.progress.short_labels`, so the bar knows nothing of any recipe's term names.
    Evaluations are written below the bar.

    Parameters
    ----------
    show : sequence of str
        Glob patterns (``fnmatch``) of the metric names to show; the
        default shows the loss, its terms, accuracies and energy gaps.

    Examples
    --------
    >>> bar = ProgressBar(show=["loss", "loss/*"])
    >>> bar.shown({"loss": 1.0, "loss/cd": 0.5, "cd/energy_gap": 2.0})
    {'loss': 1.0, 'cd': 0.5}
    """

    def __init__(self, show: Sequence[str] = DEFAULT_SHOWN) -> None:
        self.show = tuple(show)
        self.bar: Any = None

    def shown(self, row: Mapping[str, float]) -> dict[str, float]:
        """The values to show, under their short labels."""
        names = [name for name in row if any(fnmatch.fnmatchcase(name, p) for p in self.show)]
        return {label: row[name] for name, label in short_labels(names).items()}

    def on_fit_start(self, trainer: TrainerView) -> None:
        self.bar = tqdm(total=trainer.budget.total_steps, initial=trainer.step, unit="step", dynamic_ncols=True,
                        disable=trainer.process.rank != 0)

    def on_log(self, trainer: TrainerView, row: Mapping[str, float]) -> None:
        if self.bar is None:
            return
        self.bar.set_postfix({**self.shown(row), "s/it": row["seconds_per_step"]}, refresh=False)
        self.bar.update(trainer.step - self.bar.n)

    def on_evaluation(self, trainer: TrainerView, results: Mapping[str, float]) -> None:
        if self.bar is not None:
            self.bar.write(" ".join(f"{name}={value:.4g}" for name, value in results.items()))

    def on_fit_end(self, trainer: TrainerView) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def short_labels(names: Sequence[str]) -> dict[str, str]:
    """Each metric name's shortest ``/``-separated suffix that no other name shares; ``loss/<t>`` is ``<t>``.

    Examples
    --------
    >>> short_labels(["loss", "loss/p_x", "p_y_given_x/accuracy", "p_x/energy_gap", "p_x_given_y/energy_gap"])
    {'loss': 'loss', 'loss/p_x': 'p_x', 'p_y_given_x/accuracy': 'accuracy', 'p_x/energy_gap': 'p_x/energy_gap', \
'p_x_given_y/energy_gap': 'p_x_given_y/energy_gap'}
    """
    parts = {name: (name[len("loss/"):] if name.startswith("loss/") else name).split("/") for name in names}
    labels = {}
    for name, words in parts.items():
        for length in range(1, len(words) + 1):
            label = "/".join(words[-length:])
            clashes = [other for other, w in parts.items() if other != name and "/".join(w[-length:]) == label]
            if not clashes:
                break
        labels[name] = label
    return labels
