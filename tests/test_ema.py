"""Exponential moving average of parameters: the update rule, swapping the average in, exact resume."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlib.models import MLP, NetworkEnergy
from ebmlib.recipes import ScoreMatchingEBM
from ebmlib.samplers import Langevin
from ebmlib.training import ExponentialMovingAverage, Trainer


def recipe(seed: int = 0) -> ScoreMatchingEBM:
    torch.manual_seed(seed)
    model = NetworkEnergy(MLP(2, 1, hidden=16, depth=2))
    return ScoreMatchingEBM(model, torch.optim.Adam(model.parameters(), lr=1e-2), (2,), noise_std=0.3)


def loader(n: int = 12) -> list[torch.Tensor]:
    return [torch.randn(32, 2, generator=torch.Generator().manual_seed(i)) + 1.0 for i in range(n)]


def test_update_rule_with_and_without_warmup():
    parameter = torch.nn.Parameter(torch.tensor([1.0]))
    module = torch.nn.Module()
    module.weight = parameter
    plain, warm = ExponentialMovingAverage(module, decay=0.9), ExponentialMovingAverage(module, decay=0.9, warmup=True)
    expected_plain, expected_warm = 1.0, 1.0
    for t, value in enumerate([3.0, -2.0, 5.0]):
        with torch.no_grad():
            parameter.fill_(value)
        plain.update()
        warm.update()
        expected_plain = 0.9 * expected_plain + 0.1 * value
        beta = min(0.9, (1 + t) / (10 + t))
        expected_warm = beta * expected_warm + (1 - beta) * value
    assert float(plain.average["weight"]) == pytest.approx(expected_plain, rel=1e-6)
    assert float(warm.average["weight"]) == pytest.approx(expected_warm, rel=1e-6)
    assert plain.num_updates == warm.num_updates == 3


def test_a_non_finite_parameter_leaves_its_average_unchanged():
    module = torch.nn.Linear(2, 1)
    ema = ExponentialMovingAverage(module, decay=0.5)
    before = {k: v.clone() for k, v in ema.average.items()}
    with torch.no_grad():
        module.weight[0, 0] = math.nan
        module.bias.fill_(2.0)
    ema.update()
    assert torch.equal(ema.average["weight"][0, 0], before["weight"][0, 0])
    assert torch.isfinite(ema.average["weight"]).all()
    torch.testing.assert_close(ema.average["bias"], 0.5 * before["bias"] + 1.0)


def test_applied_swaps_the_average_in_and_puts_the_trained_weights_back_even_on_error():
    r = recipe()
    ema = ExponentialMovingAverage(r.model, decay=0.0)  # the average is the last update's parameters
    ema.update()
    saved = {k: v.clone() for k, v in r.model.state_dict().items()}
    r.training_step(torch.randn(32, 2), generator=torch.Generator().manual_seed(0))
    trained = {k: v.clone() for k, v in r.model.state_dict().items()}
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    with ema.applied() as model:
        assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
        sampler = Langevin(step_size=0.01, n_steps=5)
        averaged_samples = sampler.sample(model, x, generator=torch.Generator().manual_seed(2))
    with pytest.raises(RuntimeError, match="inside"), ema.applied():
        raise RuntimeError("inside")
    assert all(torch.equal(trained[k], v) for k, v in r.model.state_dict().items())
    trained_samples = Langevin(step_size=0.01, n_steps=5).sample(r.model, x, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(averaged_samples, trained_samples)


def test_trainer_updates_the_average_every_step_and_it_lags_the_weights():
    r = recipe()
    ema = ExponentialMovingAverage(r.model, decay=0.9, every=2)
    Trainer(r, device="cpu", seed=0, progress=False, callbacks=[ema]).fit(loader(), epochs=1)
    assert ema.num_updates == 6
    distance = sum(float((ema.average[k] - p.detach()).abs().sum()) for k, p in r.model.named_parameters())
    assert distance > 0


def test_the_average_resumes_exactly_from_trainer_checkpoints(tmp_path):
    straight_recipe = recipe()
    straight = ExponentialMovingAverage(straight_recipe.model, decay=0.8, warmup=True)
    Trainer(straight_recipe, device="cpu", seed=1, progress=False, callbacks=[straight],
            checkpoint_dir=tmp_path / "straight").fit(loader(), epochs=2)

    first_recipe = recipe()
    first = ExponentialMovingAverage(first_recipe.model, decay=0.8, warmup=True)
    Trainer(first_recipe, device="cpu", seed=1, progress=False, callbacks=[first],
            checkpoint_dir=tmp_path / "resumed").fit(loader(), epochs=1)
    saved = torch.load(sorted((tmp_path / "resumed").glob("*.pt"))[-1], weights_only=False)
    assert saved["callbacks"]["ExponentialMovingAverage"]["num_updates"] == 12

    second_recipe = recipe(seed=5)  # other weights, so the average must come from the checkpoint
    second = ExponentialMovingAverage(second_recipe.model, decay=0.8, warmup=True)
    trainer = Trainer(second_recipe, device="cpu", seed=1, progress=False, callbacks=[second],
                      checkpoint_dir=tmp_path / "resumed")
    trainer.resume(tmp_path / "resumed")
    assert second.num_updates == 12
    assert all(torch.equal(first.average[k], v) for k, v in second.average.items())
    trainer.fit(loader(), epochs=2)
    assert second.num_updates == straight.num_updates == 24
    assert all(torch.equal(straight.average[k], v) for k, v in second.average.items())


def test_bad_settings_and_mismatched_state_are_refused():
    with pytest.raises(ValueError, match=r"decay must lie in \[0, 1\], got 1.5"):
        ExponentialMovingAverage(torch.nn.Linear(2, 1), decay=1.5)
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        ExponentialMovingAverage(torch.zeros(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has none"):
        ExponentialMovingAverage(torch.nn.ReLU())
    ema = ExponentialMovingAverage(torch.nn.Linear(2, 1))
    with pytest.raises(ValueError, match="saved average holds"):
        ema.load_state_dict(ExponentialMovingAverage(torch.nn.Linear(2, 1, bias=False)).state_dict())
    with pytest.raises(ValueError, match="no parameters named bias"):
        ema.copy_to(torch.nn.Linear(2, 1, bias=False))
