"""The Trainer: budgets, metrics read only at refresh, callbacks, evaluation, checkpoints and exact resume."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from ebmlib.models import MLP, ClassifierEnergy
from ebmlib.recipes import JEM, jem_loss
from ebmlib.samplers import Langevin
from ebmlib.training import Trainer, resolve_device


def make_recipe(seed: int = 0) -> JEM:
    torch.manual_seed(seed)
    model = ClassifierEnergy(MLP(2, 3, hidden=16, depth=2), n_classes=3)
    buffer = ReplayBuffer(64, UniformInit((2,), -3, 3), reinit_prob=0.1, n_classes=3,
                          generator=torch.Generator().manual_seed(seed))
    return JEM(model, Langevin(step_size=0.05, n_steps=3), buffer, torch.optim.Adam(model.parameters(), lr=1e-2),
               jem_loss(p_x_given_y_weight=1.0, regularization_weight=0.1), input_noise_std=0.01)


def make_loader(n: int = 48, batch_size: int = 8) -> DataLoader:
    data = torch.Generator().manual_seed(1)
    y = torch.arange(n) % 3
    x = torch.randn(n, 2, generator=data) * 0.3 + torch.stack([y.float(), -y.float()], 1)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(2))


def parameters(recipe: JEM) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in recipe.parameters()])


def test_fit_runs_epochs_and_records_one_history_row_per_refresh():
    trainer = Trainer(make_recipe(), device="cpu", progress=False, refresh_every=4)
    history = trainer.fit(make_loader(), epochs=2)  # 6 batches per epoch
    assert (trainer.step, trainer.epoch) == (12, 2)
    assert [row["step"] for row in history] == [4.0, 6.0, 8.0, 12.0]  # every 4 steps, and at the end of epoch 1
    row = history[-1]
    for key in ("loss", "p_y_given_x/accuracy", "p_x/energy_gap", "p_x_given_y/energy_gap", "seconds_per_step"):
        assert isinstance(row[key], float) and math.isfinite(row[key])
    assert 0.0 <= row["p_y_given_x/accuracy"] <= 1.0


def test_max_steps_stops_mid_epoch_and_a_later_fit_continues():
    trainer = Trainer(make_recipe(), device="cpu", progress=False, refresh_every=1)
    trainer.fit(make_loader(), max_steps=4)
    assert (trainer.step, trainer.epoch, trainer.batch_in_epoch) == (4, 0, 4)
    trainer.fit(make_loader(), max_steps=9)
    assert (trainer.step, trainer.epoch, trainer.batch_in_epoch) == (9, 1, 3)


def test_metrics_are_read_only_at_refresh(monkeypatch):
    reads = []
    original = torch.Tensor.tolist

    def counting_tolist(self):
        reads.append(self.shape)
        return original(self)

    loader = list(make_loader())  # a plain list: no sampler that calls tolist itself
    trainer = Trainer(make_recipe(), device="cpu", progress=False, refresh_every=3)
    monkeypatch.setattr(torch.Tensor, "tolist", counting_tolist)
    trainer.fit(loader, max_steps=6)
    assert len(reads) == 2  # steps 3 and 6 (6 batches: the epoch is complete at step 6, nothing left over)


def test_callbacks_get_tensors_after_every_step_and_evaluate_runs_on_schedule():
    seen, evaluated = [], []

    def callback(trainer, metrics):
        assert all(isinstance(v, torch.Tensor) for v in metrics.values())
        seen.append(trainer.step)

    def evaluate(recipe):
        assert not recipe.training  # evaluation runs in eval mode
        evaluated.append(True)
        return {"score": 1.5}

    trainer = Trainer(make_recipe(), device="cpu", progress=False, callbacks=[callback], evaluate=evaluate,
                      eval_every=4)
    trainer.fit(make_loader(), epochs=2)
    assert seen == list(range(1, 13))
    # every 4 steps and at epoch ends, once per step: step 12 is both
    assert [e["step"] for e in trainer.evaluations] == [4.0, 6.0, 8.0, 12.0]
    assert trainer.evaluations[0]["score"] == 1.5 and trainer.recipe.training


def test_checkpoints_at_epoch_ends_hold_the_contract_and_only_three_are_kept(tmp_path):
    trainer = Trainer(make_recipe(), device="cpu", progress=False, checkpoint_dir=tmp_path, settings={"lr": 0.01})
    trainer.fit(make_loader(), epochs=4)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "checkpoint-00000012.pt", "checkpoint-00000018.pt", "checkpoint-00000024.pt"]
    state = load_checkpoint(tmp_path / "checkpoint-00000024.pt")
    assert {"recipe", "optimizers", "processes", "step", "epoch", "settings"} <= set(state)
    assert (state["step"], state["epoch"]) == (24, 4)
    assert "buffer.samples" in state["recipe"] and state["settings"]["lr"] == 0.01
    torch.testing.assert_close(state["recipe"]["buffer.samples"], trainer.recipe.buffer.samples)


def test_interrupted_run_resumes_from_the_saved_step_and_matches_an_uninterrupted_run(tmp_path):
    uninterrupted = Trainer(make_recipe(), device="cpu", seed=5, progress=False)
    uninterrupted.fit(make_loader(), epochs=2)

    def interrupt_at_step_8(trainer, metrics):
        if trainer.step == 8:
            raise KeyboardInterrupt

    first = Trainer(make_recipe(), device="cpu", seed=5, progress=False, checkpoint_dir=tmp_path,
                    callbacks=[interrupt_at_step_8])
    with pytest.raises(KeyboardInterrupt):
        first.fit(make_loader(), epochs=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-00000006.pt", "checkpoint-00000008.pt"]

    second = Trainer(make_recipe(seed=123), device="cpu", seed=0, progress=False, checkpoint_dir=tmp_path)
    second.resume(tmp_path)
    assert (second.step, second.epoch, second.batch_in_epoch) == (8, 1, 2)
    second.fit(make_loader(), epochs=2)
    assert second.step == 12
    # same data order, same chains, same noise: bit-identical to the run that was never interrupted
    assert torch.equal(parameters(second.recipe), parameters(uninterrupted.recipe))
    assert torch.equal(second.recipe.buffer.samples, uninterrupted.recipe.buffer.samples)


def test_interrupt_inside_a_step_saves_the_state_before_it_and_the_step_is_redone(tmp_path, monkeypatch):
    uninterrupted = Trainer(make_recipe(), device="cpu", seed=5, progress=False)
    uninterrupted.fit(make_loader(), max_steps=10)

    recipe = make_recipe()
    calls, sample = [], recipe.sampler.sample

    def sample_until_ctrl_c(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 * 8 + 1:  # two chains per step (p(x) and p(x|y)): the first sampling of step 9
            raise KeyboardInterrupt
        return sample(*args, **kwargs)

    monkeypatch.setattr(recipe.sampler, "sample", sample_until_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        Trainer(recipe, device="cpu", seed=5, progress=False, checkpoint_dir=tmp_path).fit(make_loader(), max_steps=10)
    resumed = Trainer(make_recipe(), device="cpu", progress=False, checkpoint_dir=tmp_path)
    resumed.resume(tmp_path / "checkpoint-00000008.pt")
    resumed.fit(make_loader(), max_steps=10)
    assert torch.equal(parameters(resumed.recipe), parameters(uninterrupted.recipe))


def test_a_new_run_refuses_a_folder_with_checkpoints_of_another_run(tmp_path):
    Trainer(make_recipe(), device="cpu", progress=False, checkpoint_dir=tmp_path).fit(make_loader(), max_steps=6)
    again = Trainer(make_recipe(), device="cpu", progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="already holds checkpoints of another run"):
        again.fit(make_loader(), max_steps=6)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-00000006.pt"]


def test_resume_without_checkpoints_says_where_it_looked(tmp_path):
    trainer = Trainer(make_recipe(), device="cpu", progress=False)
    with pytest.raises(CheckpointError, match=f"no checkpoint-<step>.pt files in {tmp_path}"):
        trainer.resume(tmp_path)


def test_device_and_argument_checks():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="refresh_every must be a positive"):
        Trainer(make_recipe(), device="cpu", refresh_every=0)
    trainer = Trainer(make_recipe(), device="cpu", progress=False)
    with pytest.raises(ValueError, match="fit needs a budget"):
        trainer.fit(make_loader())
    with pytest.raises(TypeError, match=r"must yield x, \(x,\) or \(x, y\) tensors, got dict"):
        trainer.fit([{"x": torch.zeros(2, 2)}], epochs=1)


def test_same_seed_same_run():
    runs = []
    for _ in range(2):
        trainer = Trainer(make_recipe(), device="cpu", seed=3, progress=False)
        trainer.fit(make_loader(), max_steps=5)
        runs.append(parameters(trainer.recipe))
    assert torch.equal(runs[0], runs[1])
