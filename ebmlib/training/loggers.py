"""Loggers: callbacks that write the trainer's history and evaluations to CSV files or to TensorBoard."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .callbacks import Callback, TrainerView

__all__ = ["CSVLogger", "TensorBoardLogger"]


class CSVLogger(Callback):
    """Write ``history.csv`` (a row per refresh) and ``evaluations.csv`` (a row per evaluation) to a folder.

    Written by process 0 only. The files always hold the trainer's whole
    history: a resumed run rewrites them from the checkpoint's history first
    (dropping rows an interrupted run wrote after its last checkpoint), and a
    row with new columns rewrites the file with the wider header.

    Parameters
    ----------
    directory : path-like
        Created if needed.

    Examples
    --------
    >>> import tempfile, torch
    >>> from ebmlib.buffers import ReplayBuffer, UniformInit
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> from ebmlib.recipes import EBM
    >>> from ebmlib.samplers import Langevin
    >>> from ebmlib.training import Trainer
    >>> model = NetworkEnergy(MLP(2, 1, hidden=8))
    >>> recipe = EBM(model, Langevin(step_size=0.01, n_steps=2), ReplayBuffer(16, UniformInit((2,))),
    ...              torch.optim.SGD(model.parameters(), lr=0.01))
    >>> folder = tempfile.mkdtemp()
    >>> trainer = Trainer(recipe, device="cpu", progress=False, refresh_every=2, callbacks=[CSVLogger(folder)])
    >>> _ = trainer.fit([torch.randn(8, 2) for _ in range(4)], epochs=1)
    >>> open(f"{folder}/history.csv").read().splitlines()[0].split(",")[:4]
    ['step', 'epoch', 'seconds_per_step', 'elapsed_seconds']
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._columns: dict[str, list[str]] = {}

    def on_fit_start(self, trainer: TrainerView) -> None:
        if trainer.process.rank == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._rewrite("history", trainer.history)
            self._rewrite("evaluations", trainer.evaluations)

    def on_log(self, trainer: TrainerView, row: Mapping[str, float]) -> None:
        if trainer.process.rank == 0:
            self._append("history", row, trainer.history)

    def on_evaluation(self, trainer: TrainerView, results: Mapping[str, float]) -> None:
        if trainer.process.rank == 0:
            self._append("evaluations", results, trainer.evaluations)

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.csv"

    def _append(self, name: str, row: Mapping[str, Any], all_rows: Sequence[Mapping[str, float]]) -> None:
        columns = self._columns.get(name)
        if columns is None or not set(row) <= set(columns):
            self._rewrite(name, all_rows)  # the trainer's rows, this one included
            return
        with open(self._path(name), "a", newline="") as file:
            csv.DictWriter(file, fieldnames=columns).writerow(row)

    def _rewrite(self, name: str, rows: Sequence[Mapping[str, float]]) -> None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
        self._columns[name] = columns
        if not rows:
            self._path(name).unlink(missing_ok=True)
            self._columns.pop(name)
            return
        with open(self._path(name), "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


class TensorBoardLogger(Callback):
    """Write the metrics of every refresh and every evaluation as TensorBoard scalars.

    Needs the ``tensorboard`` package (``pip install "ebmlib[tensorboard]"``),
    imported when training starts. Written by process 0 only; every history
    value but ``step`` and ``epoch`` becomes a scalar at its step, evaluations
    go under ``evaluation/``. A resumed run purges the events written after
    its checkpoint's step (an interrupted run's, which the resumed run writes
    again), and keeps those of that step itself (its history row and its
    evaluation are in the checkpoint and are not written again): every step
    appears once.

    Parameters
    ----------
    log_dir : path-like
        The run's folder (``tensorboard --logdir`` its parent).

    Examples
    --------
    >>> import tempfile
    >>> logger = TensorBoardLogger(tempfile.mkdtemp())
    >>> logger.writer is None  # opened when training starts
    True
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self.log_dir = Path(log_dir)
        self.writer: Any = None

    def on_fit_start(self, trainer: TrainerView) -> None:
        if trainer.process.rank != 0:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # torch's module imports the tensorboard package
            raise ImportError(
                'TensorBoardLogger needs the tensorboard package: pip install tensorboard (or "ebmlib[tensorboard]")'
            ) from error
        # TensorBoard hides the events at steps >= purge_step; those of trainer.step are done and kept
        self.writer = SummaryWriter(str(self.log_dir), purge_step=trainer.step + 1 if trainer.step > 0 else None)

    def on_log(self, trainer: TrainerView, row: Mapping[str, float]) -> None:
        if self.writer is None:
            return
        step = int(row["step"])
        for name, value in row.items():
            if name not in ("step", "epoch"):
                self.writer.add_scalar(name, value, step)

    def on_evaluation(self, trainer: TrainerView, results: Mapping[str, float]) -> None:
        if self.writer is None:
            return
        for name, value in results.items():
            if name != "step":
                self.writer.add_scalar(f"evaluation/{name}", value, int(results["step"]))

    def on_fit_end(self, trainer: TrainerView) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
