"""Learning-rate schedules: one writer of the lr, torch's LRScheduler semantics, composed with the guard's
reductions, and resumed exactly."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.models import MLP, NetworkEnergy
from ebmlib.recipes import EBM
from ebmlib.samplers import Langevin
from ebmlib.training import Constant, CosineDecay, DivergenceGuard, LearningRateSchedule, LinearWarmUp, Trainer


def make_ebm(lr: float = 0.1) -> EBM:
    torch.manual_seed(0)
    model = NetworkEnergy(MLP(2, 1, hidden=8))
    return EBM(model, Langevin(step_size=0.01, n_steps=2), ReplayBuffer(32, UniformInit((2,), -3, 3)),
               torch.optim.SGD(model.parameters(), lr=lr))


def loader() -> DataLoader:  # 5 batches per epoch
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(1))
    return DataLoader(TensorDataset(x), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(2))


class RecordLr:
    """A step hook recording the lr each step ran with (read at its end, before the schedule moves it on)."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def __call__(self, trainer, metrics) -> None:
        self.lrs.append(trainer.recipe.optimizer.param_groups[0]["lr"])


def test_the_lr_of_step_k_is_the_schedules_factor_at_k_as_torch_lambda_lr_gives_it():
    schedule = LinearWarmUp(3, then=CosineDecay(final_factor=0.1))
    record = RecordLr()
    Trainer(make_ebm(), device="cpu", progress=False, callbacks=[record], lr_schedule=schedule).fit(loader(),
                                                                                                  max_steps=10)
    reference_optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    reference = torch.optim.lr_scheduler.LambdaLR(reference_optimizer, lambda k: schedule.factor(k, k / 10))
    expected = []
    for _ in range(10):
        expected.append(reference_optimizer.param_groups[0]["lr"])
        reference_optimizer.step()
        reference.step()
    assert record.lrs == pytest.approx(expected, rel=1e-12)
    assert record.lrs[0] == pytest.approx(0.1 / 3) and record.lrs[2] == pytest.approx(0.1 * schedule.factor(2, 0.2))


def test_cosine_decay_follows_the_step_budget_and_ends_at_its_final_factor():
    record = RecordLr()
    trainer = Trainer(make_ebm(), device="cpu", progress=False, callbacks=[record],
                      lr_schedule=CosineDecay(final_factor=0.0))
    trainer.fit(loader(), epochs=2)  # 10 steps
    assert record.lrs == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * k / 10)) for k in range(10)])
    assert trainer.lr_schedule.get_last_lr() == [pytest.approx(0.0)]  # after the last step: the end of the budget


def test_a_recovery_scales_the_schedule_which_keeps_decaying(caplog):
    record = RecordLr()

    def nan_at_step_4(trainer, metrics):
        if trainer.step == 4:
            metrics["loss"] = torch.tensor(float("nan"))

    schedule = CosineDecay()
    trainer = Trainer(make_ebm(), device="cpu", progress=False, refresh_every=5, callbacks=[nan_at_step_4, record],
                      lr_schedule=schedule, divergence_guard=DivergenceGuard(lr_factor=0.5))
    trainer.fit(loader(), max_steps=10)
    cosine = [0.1 * 0.5 * (1 + math.cos(math.pi * k / 10)) for k in range(10)]
    # the check of step 5 recovered: from step 6 on, half of the cosine, which goes on decaying
    assert record.lrs == pytest.approx(cosine[:5] + [c * 0.5 for c in cosine[5:]])
    assert schedule.scale == 0.5 and trainer.divergence_guard.events[0]["lr_scale"] == 0.5


def test_the_guard_asks_the_schedule_and_never_writes_a_learning_rate_itself():
    scaled = []

    class Watching(Constant):
        def scale_by(self, factor: float) -> None:
            scaled.append(factor)
            super().scale_by(factor)

    recipe, schedule = make_ebm(), Watching()
    schedule.attach(recipe.optimizers())
    guard = DivergenceGuard(lr_factor=0.25)
    assert guard.check(recipe, schedule)
    recipe.optimizer.param_groups[0]["lr"] = 123.0  # whatever the optimizer holds...
    guard.observe(recipe, {"loss": torch.tensor(float("inf"))})
    assert not guard.check(recipe, schedule, step=1)
    assert scaled == [0.25] and recipe.optimizer.param_groups[0]["lr"] == pytest.approx(0.025)  # ...the schedule's


def test_the_schedule_resumes_exactly(tmp_path):
    whole = RecordLr()
    Trainer(make_ebm(), device="cpu", progress=False, callbacks=[whole], lr_schedule=CosineDecay()).fit(
        loader(), max_steps=10)

    first = Trainer(make_ebm(), device="cpu", progress=False, checkpoint_dir=tmp_path, lr_schedule=CosineDecay())
    first.fit(loader(), max_steps=5)
    second_record = RecordLr()
    second = Trainer(make_ebm(lr=99.0), device="cpu", progress=False, checkpoint_dir=tmp_path,
                     callbacks=[second_record], lr_schedule=CosineDecay())
    second.resume(tmp_path)
    second.fit(loader(), max_steps=10)
    assert second.lr_schedule.base_lrs == [[0.1]]  # from the checkpoint, not from the new optimizer
    assert second_record.lrs == pytest.approx(whole.lrs[5:], rel=1e-12)


def test_schedule_settings_are_checked():
    with pytest.raises(ValueError, match=r"final_factor must lie in \[0, 1\]"):
        CosineDecay(final_factor=2.0)
    with pytest.raises(ValueError, match="steps must be a positive"):
        LinearWarmUp(0)
    with pytest.raises(RuntimeError, match="apply before attach"):
        Constant().apply(0, 0.0)
    with pytest.raises(ValueError, match="factor must be positive"):
        Constant().scale_by(0.0)
    assert isinstance(Trainer(make_ebm(), device="cpu", progress=False).lr_schedule, LearningRateSchedule)


def test_term_warm_up_trains_the_classifier_alone_then_ramps_the_generative_terms_in(tmp_path):
    from ebmlib.models import ClassifierEnergy
    from ebmlib.recipes import JEM, jem_loss
    from ebmlib.training import TermWarmUp

    def make_jem() -> JEM:
        torch.manual_seed(0)
        model = ClassifierEnergy(MLP(2, 3, hidden=8), n_classes=3)
        return JEM(model, Langevin(step_size=0.01, n_steps=2), ReplayBuffer(30, UniformInit((2,), -3, 3)),
                   torch.optim.SGD(model.parameters(), lr=0.1), jem_loss(regularization_weight=0.5))

    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(1))
    y = torch.arange(40) % 3

    def data() -> DataLoader:
        return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(2))

    def run(recipe, steps, checkpoints=None, resume=False):
        seen = []  # (weight of p_x, energy_l2 weight, buffer changed) of each step
        warm_up = TermWarmUp(recipe.loss, ["p_x", "energy_l2"], start=2, end=6)

        def record(trainer, metrics):
            seen.append((recipe.loss.weights["p_x"], recipe.loss.weights["energy_l2"], "loss/p_x" in metrics))
        trainer = Trainer(recipe, device="cpu", progress=False, checkpoint_dir=checkpoints,
                          callbacks=[record, warm_up])  # record reads the weights a step ran with
        if resume:
            trainer.resume(checkpoints)
        trainer.fit(data(), max_steps=steps)
        return seen, recipe

    seen, recipe = run(make_jem(), 8)
    assert [s[0] for s in seen] == pytest.approx([0, 0, 0, 0.25, 0.5, 0.75, 1, 1])
    assert [s[1] for s in seen] == pytest.approx([0, 0, 0, 0.125, 0.25, 0.375, 0.5, 0.5])
    assert [s[2] for s in seen] == [False] * 3 + [True] * 5  # no p_x term (and no sampling) at weight 0
    assert recipe.loss.weights["p_y_given_x"] == 1.0  # not warmed up

    run(make_jem(), 4, checkpoints=tmp_path)
    resumed, _ = run(make_jem(), 8, checkpoints=tmp_path, resume=True)
    assert resumed == seen[4:]  # the ramp continues at the resumed step

    switch = TermWarmUp(recipe.loss, ["p_x"], start=3, end=3)  # no ramp: off before step 3, full from it
    assert [switch.factor(k) for k in (0, 2, 3, 4)] == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="terms must name terms of the loss"):
        TermWarmUp(recipe.loss, ["p_z"], start=0, end=5)
    with pytest.raises(ValueError, match="0 <= start <= end"):
        TermWarmUp(recipe.loss, ["p_x"], start=5, end=2)
    with pytest.raises(TypeError, match="WeightedSum"):
        TermWarmUp(torch.nn.MSELoss(), ["p_x"], start=0, end=1)
