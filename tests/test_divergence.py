"""The divergence guard: runaway or NaN energies mid-run are caught at the refresh points and undone."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.checkpoint import list_checkpoints, load_checkpoint
from ebmlib.models import MLP, ClassifierEnergy
from ebmlib.recipes import JEM, jem_loss
from ebmlib.samplers import Langevin
from ebmlib.training import Constant, DivergenceError, DivergenceGuard, Trainer


class Poisonable(nn.Module):
    """An MLP whose logits become ``poison`` (NaN or huge) while ``active``: a stand-in for a run blowing up."""

    def __init__(self, poison: float) -> None:
        super().__init__()
        self.network = MLP(2, 3, hidden=16, depth=2)
        self.poison = poison
        self.active = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)
        return logits * self.poison if self.active else logits


def make_recipe(poison: float) -> JEM:
    torch.manual_seed(0)
    model = ClassifierEnergy(Poisonable(poison), n_classes=3)
    buffer = ReplayBuffer(48, UniformInit((2,), -3, 3), n_classes=3, generator=torch.Generator().manual_seed(0))
    return JEM(model, Langevin(step_size=0.05, n_steps=3), buffer, torch.optim.Adam(model.parameters(), lr=1e-2),
               jem_loss(regularization_weight=0.1))


def make_loader() -> DataLoader:  # 6 batches per epoch
    y = torch.arange(48) % 3
    x = torch.randn(48, 2, generator=torch.Generator().manual_seed(1)) * 0.3 + y.float().unsqueeze(1)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(2))


def poison_during(steps: set[int]):
    """A callback arming the poison for the steps in ``steps`` (it runs after step s, so arms step s + 1)."""

    def callback(trainer, metrics):
        trainer.recipe.model.network.active = trainer.step + 1 in steps

    return callback


def parameters(state: dict) -> torch.Tensor:
    return torch.cat([v.flatten() for k, v in state.items() if k.startswith("model.")])


@pytest.mark.parametrize("poison", [float("nan"), 1e12])
def test_divergence_mid_run_restores_the_last_good_state_lowers_lr_and_keeps_training(tmp_path, caplog, poison):
    recipe = make_recipe(poison)
    good = {}

    def remember_step_4(trainer, metrics):
        if trainer.step == 4:
            good.update({k: v.clone() for k, v in trainer.recipe.state_dict().items()})

    guard = DivergenceGuard(max_abs_energy=1e6, lr_factor=0.5, max_recoveries=2)
    trainer = Trainer(recipe, device="cpu", progress=False, refresh_every=4, checkpoint_dir=tmp_path,
                      keep_checkpoints=10, divergence_guard=guard, callbacks=[remember_step_4, poison_during({5})])
    with caplog.at_level(logging.WARNING, logger="ebmlib"):
        trainer.fit(make_loader(), epochs=3)
    # step 5 blew up; the check before the epoch-end checkpoint (step 6) saw it and went back to step 4
    assert guard.recoveries == 1 and guard.events[0]["step"] == 6 and guard.events[0]["restored_step"] == 4
    problem = "non-finite" if math.isnan(poison) else "runaway"
    assert problem in guard.events[0]["problem"]
    assert "divergence at step 6" in caplog.text and "restored the state of step 4" in caplog.text
    checkpoint_6 = load_checkpoint(tmp_path / "checkpoint-00000006.pt")
    assert torch.equal(parameters(checkpoint_6["recipe"]), parameters(good))  # never the diverged state
    assert checkpoint_6["optimizers"][0]["param_groups"][0]["lr"] == pytest.approx(5e-3)
    assert not torch.equal(checkpoint_6["recipe"]["buffer.samples"], good["buffer.samples"])  # chains restarted
    assert checkpoint_6["callbacks"]["DivergenceGuard"]["recoveries"] == 1
    # training went on from there, healthy, with half the learning rate
    assert trainer.step == 18 and recipe.optimizer.param_groups[0]["lr"] == pytest.approx(5e-3)
    for path in list_checkpoints(tmp_path):
        state = load_checkpoint(path)["recipe"]
        assert all(torch.isfinite(v).all() for v in state.values()), path.name
    assert all(math.isfinite(row["loss"]) for row in trainer.history[2:])  # only the window of step 5 shows it


def test_persistent_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    recipe = make_recipe(float("nan"))
    guard = DivergenceGuard(max_recoveries=2)
    trainer = Trainer(recipe, device="cpu", progress=False, refresh_every=2, checkpoint_dir=tmp_path,
                      divergence_guard=guard, callbacks=[poison_during(set(range(8, 100)))])
    with pytest.raises(DivergenceError, match=r"after 2 recoveries \(max_recoveries=2\).*step 6"):
        trainer.fit(make_loader(), epochs=3)
    assert [e["step"] for e in guard.events] == [8, 10]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-00000006.pt"]  # epoch 1, healthy
    assert all(torch.isfinite(v).all() for v in load_checkpoint(tmp_path / "checkpoint-00000006.pt")["recipe"]
               .values())
    assert all(torch.isfinite(p).all() for p in recipe.parameters())  # the last good state is restored


def test_the_guard_reads_nothing_per_step_and_leaves_healthy_runs_alone(monkeypatch):
    reads = []
    original = torch.Tensor.cpu

    def counting_cpu(self, *args, **kwargs):
        reads.append(self.shape)
        return original(self, *args, **kwargs)

    guarded = Trainer(make_recipe(1.0), device="cpu", seed=3, progress=False, refresh_every=3)
    plain = Trainer(make_recipe(1.0), device="cpu", seed=3, progress=False, refresh_every=3, divergence_guard=False)
    monkeypatch.setattr(torch.Tensor, "cpu", counting_cpu)
    guarded.fit(make_loader(), max_steps=6)
    monkeypatch.undo()
    plain.fit(make_loader(), max_steps=6)
    assert reads == [(3,), (3,)]  # the guard's flags, read at the refreshes of steps 3 and 6 only
    assert guarded.divergence_guard.recoveries == 0 and plain.divergence_guard is None
    assert all(torch.equal(a, b) for a, b in zip(guarded.recipe.parameters(), plain.recipe.parameters(), strict=True))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"max_abs_energy": 0.0}, "max_abs_energy must be positive"),
     ({"lr_factor": 1.5}, r"lr_factor must lie in \(0, 1\]"),
     ({"max_recoveries": -1}, "max_recoveries must be"),
     ({"max_grad_norm": -1.0}, "max_grad_norm must be positive")],
)
def test_bad_guard_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DivergenceGuard(**kwargs)


def test_huge_gradients_count_when_bounded():
    recipe = make_recipe(1.0)
    guard, schedule = DivergenceGuard(max_grad_norm=1e-6, restart_chains=False), Constant()
    schedule.attach(recipe.optimizers())
    assert guard.check(recipe, schedule)
    buffer_before = recipe.buffer.samples.clone()
    x, y = torch.randn(8, 2), torch.arange(8) % 3
    guard.observe(recipe, recipe.training_step(x, y))
    assert not guard.check(recipe, schedule, step=1) and "gradient" in guard.events[0]["problem"]
    assert torch.equal(recipe.buffer.samples, buffer_before)  # restored from the snapshot, not restarted
