"""Loggers (CSV, TensorBoard) as callbacks, and the Lightning adapter running a recipe.

The optional packages (tensorboard, lightning) are in the ``test`` extra, so the README's test command runs
every test here; ``importorskip`` only guards a bare install (its reason names the extra).
"""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.models import MLP, NetworkEnergy
from ebmlib.recipes import EBM
from ebmlib.samplers import Langevin
from ebmlib.training import Trainer
from ebmlib.training.loggers import CSVLogger, TensorBoardLogger


def make_ebm(seed: int = 0) -> EBM:
    torch.manual_seed(seed)
    model = NetworkEnergy(MLP(2, 1, hidden=16))
    buffer = ReplayBuffer(64, UniformInit((2,), -3, 3), generator=torch.Generator().manual_seed(seed))
    return EBM(model, Langevin(step_size=0.01, n_steps=3), buffer, torch.optim.Adam(model.parameters(), lr=1e-2))


def data(n: int = 48) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(1)) * 0.5 + 1.0


def loader() -> DataLoader:  # 6 batches per epoch
    return DataLoader(TensorDataset(data()), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(2))


def read_csv(path) -> list[dict[str, float]]:
    with open(path, newline="") as file:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(file)]


def test_csv_logger_writes_the_history_and_the_evaluations(tmp_path):
    trainer = Trainer(make_ebm(), device="cpu", progress=False, refresh_every=4, callbacks=[CSVLogger(tmp_path)],
                      evaluate=lambda recipe: {"score": 2.5})
    trainer.fit(loader(), epochs=2)
    rows = read_csv(tmp_path / "history.csv")  # pytest.approx compares flat collections only (pytest >= 9)
    assert len(rows) == len(trainer.history) > 0
    assert all(row == pytest.approx(expected) for row, expected in zip(rows, trainer.history, strict=True))
    assert read_csv(tmp_path / "evaluations.csv") == [{"step": 6.0, "score": 2.5}, {"step": 12.0, "score": 2.5}]


def test_csv_logger_after_a_crash_and_resume_holds_exactly_the_resumed_history(tmp_path):
    uninterrupted = Trainer(make_ebm(), device="cpu", seed=1, progress=False, refresh_every=2)
    uninterrupted.fit(loader(), epochs=2)

    def crash_at_step_10(trainer, metrics):
        if trainer.step == 10:
            raise RuntimeError("power cut")

    first = Trainer(make_ebm(), device="cpu", seed=1, progress=False, refresh_every=2, checkpoint_dir=tmp_path / "c",
                    callbacks=[crash_at_step_10, CSVLogger(tmp_path / "logs")])
    with pytest.raises(RuntimeError, match="power cut"):
        first.fit(loader(), epochs=2)
    assert read_csv(tmp_path / "logs" / "history.csv")[-1]["step"] == 8.0  # rows past the checkpoint of step 6
    second = Trainer(make_ebm(), device="cpu", progress=False, refresh_every=2, checkpoint_dir=tmp_path / "c",
                     callbacks=[CSVLogger(tmp_path / "logs")])
    second.resume(tmp_path / "c")
    second.fit(loader(), epochs=2)
    rows = read_csv(tmp_path / "logs" / "history.csv")
    assert [r["step"] for r in rows] == [r["step"] for r in uninterrupted.history] == [2, 4, 6, 8, 10, 12]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in uninterrupted.history])


def test_csv_logger_widens_its_header_when_new_columns_appear(tmp_path):
    trainer = SimpleNamespace(process=SimpleNamespace(rank=0), history=[], evaluations=[])
    logger = CSVLogger(tmp_path)
    logger.on_fit_start(trainer)
    for row in ({"step": 1.0, "loss": 0.5}, {"step": 2.0, "loss": 0.25, "accuracy": 0.75}):
        trainer.history.append(row)
        logger.on_log(trainer, row)
    with open(tmp_path / "history.csv") as file:
        assert file.read().splitlines() == ["step,loss,accuracy", "1.0,0.5,", "2.0,0.25,0.75"]


def test_tensorboard_logger_writes_every_metric_at_its_step(tmp_path):
    pytest.importorskip("tensorboard", reason="needs tensorboard: pip install -e '.[test]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = Trainer(make_ebm(), device="cpu", progress=False, refresh_every=3,
                      callbacks=[TensorBoardLogger(tmp_path)], evaluate=lambda recipe: {"score": 2.5})
    trainer.fit(loader(), epochs=1)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    loss = events.Scalars("loss")
    assert [e.step for e in loss] == [3, 6]
    assert [e.value for e in loss] == pytest.approx([row["loss"] for row in trainer.history])
    assert {"energy_gap", "lr", "seconds_per_step", "evaluation/score"} <= set(events.Tags()["scalars"])

