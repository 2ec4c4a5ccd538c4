"""TensorBoardLogger across a resume: the checkpoint's step keeps its points, the steps after it appear once.

A resumed run purges the events an earlier run wrote *after* the checkpoint (they are redone), never those of the
checkpoint's own step (its refresh row and its evaluation are in the checkpoint and are not written again).
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.models import MLP, NetworkEnergy
from ebmlib.recipes import EBM
from ebmlib.samplers import Langevin
from ebmlib.training import Trainer
from ebmlib.training.loggers import TensorBoardLogger

BATCHES = [torch.randn(8, 2, generator=torch.Generator().manual_seed(i)) for i in range(6)]  # 6 steps an epoch


def make_ebm() -> EBM:
    torch.manual_seed(0)
    model = NetworkEnergy(MLP(2, 1, hidden=8))
    buffer = ReplayBuffer(32, UniformInit((2,), -3, 3), generator=torch.Generator().manual_seed(0))
    return EBM(model, Langevin(step_size=0.01, n_steps=2), buffer, torch.optim.SGD(model.parameters(), lr=1e-2))


def make_trainer(tmp_path, callbacks=()) -> Trainer:
    return Trainer(make_ebm(), device="cpu", progress=False, refresh_every=2, eval_every=4,
                   evaluate=lambda recipe: {"score": 1.5}, checkpoint_dir=tmp_path / "checkpoints",
                   callbacks=[*callbacks, TensorBoardLogger(tmp_path / "logs")])


def read_scalars(log_dir) -> dict[str, list[int]]:
    """The steps of every scalar tag, as TensorBoard shows them (purges applied)."""
    pytest.importorskip("tensorboard", reason="needs tensorboard: pip install -e '.[test]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def assert_each_step_once(steps: list[int], expected: list[int]) -> None:
    doubled = sorted(step for step, count in Counter(steps).items() if count > 1)
    assert not doubled, f"steps written more than once: {doubled}"
    assert sorted(steps) == expected


def test_a_resumed_run_keeps_the_checkpoint_step_and_writes_every_later_step_once(tmp_path):
    pytest.importorskip("tensorboard", reason="needs tensorboard: pip install -e '.[test]'")
    first = make_trainer(tmp_path)
    first.fit(BATCHES, max_steps=8)  # a checkpoint at step 8, with a loss point and an evaluation there
    assert first.step == 8 and first.evaluations[-1]["step"] == 8.0
    second = make_trainer(tmp_path)
    second.resume(tmp_path / "checkpoints")
    second.fit(BATCHES, max_steps=16)
    scalars = read_scalars(tmp_path / "logs")
    assert_each_step_once(scalars["loss"], list(range(2, 17, 2)))
    assert_each_step_once(scalars["evaluation/score"], [4, 6, 8, 12, 16])  # every 4 steps and at epoch ends (6, 12)
    assert scalars["evaluation/score"] == [int(r["step"]) for r in second.evaluations]


def test_events_written_after_the_checkpoint_by_a_crashed_run_are_replaced_once(tmp_path):
    pytest.importorskip("tensorboard", reason="needs tensorboard: pip install -e '.[test]'")

    def crash_at_step_11(trainer, metrics):
        if trainer.step == 11:
            raise RuntimeError("power cut")

    first = make_trainer(tmp_path, callbacks=[crash_at_step_11])
    with pytest.raises(RuntimeError, match="power cut"):
        first.fit(BATCHES, epochs=3)  # checkpoint at step 6 (the end of epoch 0); points up to 10 written
    assert read_scalars(tmp_path / "logs")["loss"] == [2, 4, 6, 8, 10]
    second = make_trainer(tmp_path)
    second.resume(tmp_path / "checkpoints")
    assert second.step == 6
    second.fit(BATCHES, epochs=3)
    scalars = read_scalars(tmp_path / "logs")
    assert_each_step_once(scalars["loss"], list(range(2, 19, 2)))
    assert_each_step_once(scalars["evaluation/score"], [4, 6, 8, 12, 16, 18])
