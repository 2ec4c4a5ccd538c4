"""Callbacks: named hooks in a fixed order, state kept in checkpoints and restored on resume; the Trainer needs
nothing of a recipe but the Recipe protocol (a buffer-free recipe trains under it and its divergence guard);
batches of ``DataLoader(TensorDataset(x))``; progress labels derived from metric names alone."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.checkpoint import list_checkpoints, load_checkpoint
from ebmlib.models import MLP, NetworkEnergy
from ebmlib.recipes import EBM, Recipe, ShortRunEBM
from ebmlib.samplers import Langevin
from ebmlib.training import Callback, CSVLogger, DivergenceGuard, ProgressBar, Trainer
from ebmlib.training.progress import short_labels


def make_ebm(seed: int = 0) -> EBM:
    torch.manual_seed(seed)
    model = NetworkEnergy(MLP(2, 1, hidden=16))
    buffer = ReplayBuffer(64, UniformInit((2,), -3, 3), generator=torch.Generator().manual_seed(seed))
    return EBM(model, Langevin(step_size=0.01, n_steps=3), buffer, torch.optim.Adam(model.parameters(), lr=1e-2))


def unlabelled_loader(n: int = 48, batch_size: int = 8) -> DataLoader:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(1))
    return DataLoader(TensorDataset(x), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(2))


class Recorder(Callback):
    """Records every hook call; keeps a running mean of the loss as its (checkpointed) state."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.loss_sum = torch.zeros(())
        self.steps = 0

    def on_fit_start(self, trainer):
        self.calls.append("fit_start")

    def on_step_end(self, trainer, metrics):
        assert all(isinstance(v, torch.Tensor) for v in metrics.values())
        self.calls.append("step")
        self.loss_sum = self.loss_sum + metrics["loss"]
        self.steps += 1

    def on_sync(self, trainer):
        self.calls.append("sync")

    def on_log(self, trainer, row):
        assert all(isinstance(v, float) for v in row.values())
        self.calls.append("log")

    def on_epoch_end(self, trainer):
        self.calls.append("epoch_end")

    def on_evaluation(self, trainer, results):
        self.calls.append(f"evaluation@{int(results['step'])}")

    def on_save(self, trainer, path):
        assert path.exists()
        self.calls.append(f"save@{trainer.step}")

    def on_fit_end(self, trainer):
        self.calls.append("fit_end")

    def state_dict(self):
        return {"loss_sum": self.loss_sum, "steps": self.steps}

    def load_state_dict(self, state):
        self.loss_sum, self.steps = state["loss_sum"], state["steps"]


def test_hooks_run_in_a_documented_order(tmp_path):
    recorder = Recorder()
    trainer = Trainer(make_ebm(), device="cpu", progress=False, refresh_every=4, checkpoint_dir=tmp_path,
                      callbacks=[recorder], evaluate=lambda recipe: {"score": 1.0})
    trainer.fit(unlabelled_loader(n=48), epochs=1)  # 6 steps
    assert recorder.calls == [
        "fit_start", "sync",
        "step", "step", "step", "step", "sync", "log",
        "step", "step", "sync", "log",  # the last, partial window of the epoch
        "epoch_end", "evaluation@6", "sync", "save@6",  # the evaluation callback runs after the recorder
        "fit_end",  # the checkpoint of step 6 exists: fit's final save writes nothing again
    ]


def test_a_callbacks_state_is_saved_and_restored_on_resume(tmp_path):
    whole = Recorder()
    Trainer(make_ebm(), device="cpu", seed=3, progress=False, callbacks=[whole]).fit(unlabelled_loader(), epochs=2)

    def interrupt_at_step_8(trainer, metrics):
        if trainer.step == 8:
            raise KeyboardInterrupt

    first = Recorder()
    with pytest.raises(KeyboardInterrupt):
        Trainer(make_ebm(), device="cpu", seed=3, progress=False, checkpoint_dir=tmp_path,
                callbacks=[first, interrupt_at_step_8]).fit(unlabelled_loader(), epochs=2)
    saved = load_checkpoint(tmp_path / "checkpoint-00000008.pt")["callbacks"]
    assert saved["Recorder"]["steps"] == 8 and set(saved) >= {"Recorder", "DivergenceGuard", "LearningRateSchedule"}
    second = Recorder()
    trainer = Trainer(make_ebm(seed=5), device="cpu", progress=False, checkpoint_dir=tmp_path,
                      callbacks=[second, interrupt_at_step_8])
    trainer.resume(tmp_path)
    assert second.steps == 8  # restored before fit starts
    trainer.fit(unlabelled_loader(), epochs=2)
    assert second.steps == whole.steps == 12
    assert torch.equal(second.loss_sum, whole.loss_sum)  # the run went on exactly as the uninterrupted one


def test_a_step_is_evaluated_once_when_an_epoch_ends_on_an_evaluation_step(tmp_path):
    calls: list[int] = []
    recorder = Recorder()

    def evaluate(recipe):
        calls.append(len(calls))
        return {"score": 1.0}

    batches = [torch.randn(8, 2, generator=torch.Generator().manual_seed(i)) for i in range(4)]  # 4 steps an epoch
    trainer = Trainer(make_ebm(), device="cpu", progress=False, checkpoint_dir=tmp_path / "checkpoints",
                      evaluate=evaluate, eval_every=2, callbacks=[recorder, CSVLogger(tmp_path / "logs")])
    trainer.fit(batches, max_steps=8)  # epoch ends at steps 4 and 8, both multiples of eval_every
    assert [r["step"] for r in trainer.evaluations] == [2.0, 4.0, 6.0, 8.0]
    assert len(calls) == 4  # paid once per step
    assert [c for c in recorder.calls if c.startswith("evaluation")] == [f"evaluation@{s}" for s in (2, 4, 6, 8)]
    with open(tmp_path / "logs" / "evaluations.csv") as file:
        assert [line.split(",")[0] for line in file.read().splitlines()[1:]] == ["2.0", "4.0", "6.0", "8.0"]

    # max_steps stopped the run on the last batch of epoch 1 before it counted as complete: a resumed fit completes
    # that epoch at step 8 again, which was evaluated (the checkpoint holds it) and is not evaluated twice
    resumed = Trainer(make_ebm(), device="cpu", progress=False, checkpoint_dir=tmp_path / "checkpoints",
                      evaluate=evaluate, eval_every=2)
    resumed.resume(tmp_path / "checkpoints")
    assert resumed.step == 8 and resumed.epoch == 1
    resumed.fit(batches, epochs=3)
    assert [r["step"] for r in resumed.evaluations] == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    assert len(calls) == 6


def test_callbacks_with_the_same_state_key_are_refused():
    with pytest.raises(ValueError, match="distinct state_key"):
        Trainer(make_ebm(), device="cpu", progress=False, callbacks=[Recorder(), Recorder()])


def test_a_loader_of_tensor_dataset_x_trains():
    loader = unlabelled_loader()
    assert isinstance(next(iter(loader)), list) and len(next(iter(loader))) == 1  # batches are [x]
    trainer = Trainer(make_ebm(), device="cpu", progress=False, refresh_every=3)
    history = trainer.fit(loader, epochs=2)
    assert trainer.step == 12 and all(torch.isfinite(torch.tensor(row["loss"])) for row in history)


class Poisonable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.network = MLP(2, 1, hidden=16)
        self.active = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(x)
        return out * float("nan") if self.active else out


def test_a_buffer_free_recipe_trains_under_the_trainer_and_its_guard(tmp_path, caplog):
    torch.manual_seed(0)
    model = NetworkEnergy(Poisonable())
    recipe = ShortRunEBM(model, Langevin(step_size=0.01, n_steps=3), UniformInit((2,), -3, 3),
                         torch.optim.Adam(model.parameters(), lr=1e-2))

    def poison_step_5(trainer, metrics):
        model.network.active = trainer.step + 1 == 5

    guard = DivergenceGuard(lr_factor=0.5)
    trainer = Trainer(recipe, device="cpu", progress=False, refresh_every=3, checkpoint_dir=tmp_path,
                      divergence_guard=guard, callbacks=[poison_step_5])
    with caplog.at_level(logging.WARNING, logger="ebmlib"):
        trainer.fit(unlabelled_loader(), epochs=2)
    assert guard.recoveries == 1 and guard.events[0]["restored_step"] == 3 and "chains restarted" in caplog.text
    assert recipe.optimizer.param_groups[0]["lr"] == pytest.approx(5e-3)
    assert all(torch.isfinite(p).all() for p in recipe.parameters())
    state = load_checkpoint(list_checkpoints(tmp_path)[-1])
    assert not any(key.startswith("buffer") for key in state["recipe"])


def test_the_trainer_needs_only_the_recipe_protocol():
    class Quadratic(Recipe):  # no model attribute, sampler, buffer or optimizer attribute
        def __init__(self) -> None:
            super().__init__()
            self.centre = nn.Parameter(torch.zeros(2))
            self._optimizers = [torch.optim.SGD([self.centre], lr=0.1)]

        def training_step(self, x, y=None, generator=None):
            loss = (x - self.centre).pow(2).sum(1).mean()
            self._optimizers[0].zero_grad()
            loss.backward()
            self._optimizers[0].step()
            return {"loss": loss.detach()}

        def optimizers(self):
            return self._optimizers

        def data_parallel_modules(self):
            return [self]

    recipe = Quadratic()
    Trainer(recipe, device="cpu", progress=False).fit([torch.ones(4, 2) * 3] * 50, epochs=1)
    torch.testing.assert_close(recipe.centre.detach(), torch.full((2,), 3.0), atol=1e-3, rtol=0)
    with pytest.raises(TypeError, match="recipe must implement ebmlib.recipes.Recipe, got Linear"):
        Trainer(nn.Linear(2, 1), device="cpu")


def test_progress_labels_come_from_the_metric_names_alone():
    names = ["loss", "loss/p_y_given_x", "loss/my_term", "p_y_given_x/accuracy", "p_x/energy_gap",
             "p_x_given_y/energy_gap", "my_term/score"]
    assert short_labels(names) == {
        "loss": "loss", "loss/p_y_given_x": "p_y_given_x", "loss/my_term": "my_term",
        "p_y_given_x/accuracy": "accuracy", "p_x/energy_gap": "p_x/energy_gap",
        "p_x_given_y/energy_gap": "p_x_given_y/energy_gap", "my_term/score": "score"}
    row = dict.fromkeys(names, 1.0)
    assert set(ProgressBar().shown(row)) == {"loss", "p_y_given_x", "my_term", "accuracy", "p_x/energy_gap",
                                             "p_x_given_y/energy_gap"}
    assert ProgressBar(show=["*score"]).shown(row) == {"score": 1.0}
