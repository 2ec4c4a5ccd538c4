"""The EBM and JEM recipes: they learn, and every part can be swapped."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from ebmlib.buffers import GaussianInit, ReplayBuffer, UniformInit
from ebmlib.data import sample_toy
from ebmlib.evaluation import mmd
from ebmlib.losses import (
    Classification,
    ConditionalEnergies,
    ContrastiveDivergence,
    CrossEntropy,
    Energies,
    EnergyBatch,
    EnergyRegularization,
    WeightedSum,
)
from ebmlib.models import MLP, ClassifierEnergy, NetworkEnergy
from ebmlib.recipes import EBM, JEM, ShortRunEBM, jem_loss
from ebmlib.samplers import HMC, MALA, Langevin


def toy_recipe(seed: int = 0) -> EBM:
    torch.manual_seed(seed)
    model = NetworkEnergy(MLP(2, 1, hidden=64, depth=3))
    loss = WeightedSum({"cd": (1.0, ContrastiveDivergence()), "l2": (0.1, EnergyRegularization())})
    return EBM(model, Langevin(step_size=0.01, n_steps=20),
               ReplayBuffer(4096, UniformInit((2,), -3, 3), generator=torch.Generator().manual_seed(seed)),
               torch.optim.Adam(model.parameters(), lr=3e-3), loss)


@pytest.mark.slow
def test_toy_ebm_moves_samples_towards_the_target():
    recipe, g = toy_recipe(), torch.Generator().manual_seed(0)
    target = sample_toy("eight_gaussians", 1000, torch.Generator().manual_seed(1))

    def distance() -> float:
        samples = recipe.generate(1000, n_steps=200, generator=torch.Generator().manual_seed(2))
        return float(mmd(samples, target))

    before = distance()
    for _ in range(400):
        metrics = recipe.training_step(sample_toy("eight_gaussians", 256, g), generator=g)
    after = distance()
    assert torch.isfinite(metrics["loss"])
    # Measured with these seeds: 0.287 -> 0.058 (two target samples differ by ~0.005).
    # Required: at least a 3x drop.
    assert after < before / 3, (before, after)


def bars(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of 1x6x6 images in [-1, 1]: a horizontal bar, a vertical bar, a diagonal."""
    y = torch.randint(3, (n,), generator=generator)
    x = -torch.ones(n, 1, 6, 6)
    position = torch.randint(6, (n,), generator=generator)
    for i in range(n):
        p = int(position[i])
        if y[i] == 0:
            x[i, 0, p, :] = 1
        elif y[i] == 1:
            x[i, 0, :, p] = 1
        else:
            x[i, 0] = torch.eye(6).roll(p, 1) * 2 - 1
    return (x + 0.1 * torch.randn(x.shape, generator=generator)).clamp(-1, 1), y


def tiny_jem(loss=None, sampler=None, buffer=None, **options) -> JEM:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(36, 64), nn.SiLU(), nn.Linear(64, 3))
    model = ClassifierEnergy(network, n_classes=3)
    return JEM(model, sampler or Langevin(step_size=1.0, noise_std=0.01, n_steps=10, clamp=(-1, 1)),
               buffer or ReplayBuffer(600, UniformInit((1, 6, 6)), n_classes=3),
               torch.optim.Adam(model.parameters(), lr=1e-3), loss, input_noise_std=0.03, **options)


def test_jem_learns_to_classify_and_gives_data_lower_energy_than_noise():
    g = torch.Generator().manual_seed(0)
    jem = tiny_jem(loss=jem_loss(p_x_given_y_weight=1.0, regularization_weight=0.1))
    for _ in range(150):
        metrics = jem.training_step(*bars(32, g), generator=g)
    assert all(torch.isfinite(v) for v in metrics.values())
    x_test, y_test = bars(300, torch.Generator().manual_seed(1))
    accuracy = float((jem.classify(x_test) == y_test).float().mean())
    assert accuracy > 0.9  # chance is 1/3
    noise = torch.rand(300, 1, 6, 6, generator=g) * 2 - 1
    with torch.no_grad():
        assert float(jem.model(x_test).mean()) < float(jem.model(noise).mean())
    assert jem.generate(6, y=torch.arange(6) % 3, generator=g).shape == (6, 1, 6, 6)


def count_calls(module: nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_jem_uses_one_forward_pass_per_step_for_every_term():
    jem = tiny_jem(loss=jem_loss(p_x_given_y_weight=1.0, regularization_weight=0.1), sampler=Langevin(0.1, n_steps=2))
    calls = count_calls(jem.model.network)
    jem.training_step(*bars(8, torch.Generator().manual_seed(0)))
    assert calls[0] == 2 * 2 + 1  # two chains of 2 steps (unconditional, conditional) + one shared pass


def test_jem_loss_weighs_the_data_side_of_the_penalty_on_its_own():
    batch = EnergyBatch(Energies(torch.tensor([2.0]), torch.tensor([1.0])),
                        ConditionalEnergies(torch.tensor([3.0]), torch.tensor([1.0])),
                        Classification(torch.zeros(1, 2), torch.tensor([0])))
    loss = jem_loss(classification_weight=0.0, p_x_weight=1.0, p_x_given_y_weight=1.0, regularization_weight=0.1,
                    positive_regularization_weight=0.5)
    total, metrics = loss(batch)
    # the terms' own values (metrics) are 5 E(x+)^2 + E(x-)^2, weighted by alpha = 0.1: alpha+ = 0.5 on the data side
    assert float(metrics["loss/energy_l2"]) == pytest.approx(5 * 4 + 1)
    assert float(metrics["loss/energy_l2_given_y"]) == pytest.approx(5 * 9 + 1)
    assert float(total) == pytest.approx((2 - 1) + (3 - 1) + 0.5 * 4 + 0.1 * 1 + 0.5 * 9 + 0.1 * 1)
    same = jem_loss(p_x_weight=1.0, regularization_weight=0.1)(batch)[1]["loss/energy_l2"]
    assert float(same) == pytest.approx(4 + 1)  # by default alpha+ = alpha
    with pytest.raises(ValueError, match="needs regularization_weight > 0"):
        jem_loss(positive_regularization_weight=0.5)
    assert jem_loss(positive_regularization_weight=0.0).weights["energy_l2"] == 0.0  # both off: no penalty
    with pytest.raises(ValueError, match="positive_regularization_weight must be non-negative"):
        jem_loss(regularization_weight=0.1, positive_regularization_weight=-1.0)


@pytest.mark.parametrize("chains", ["marginal", "mixture"])
def test_n_negatives_sets_the_chains_per_step_whatever_the_data_batch(chains):
    loss = jem_loss(p_x_weight=1.0, p_x_given_y_weight=1.0, regularization_weight=0.1)
    jem = tiny_jem(loss=loss, sampler=Langevin(0.1, n_steps=2), unconditional_chains=chains, n_negatives=3)
    inputs = []
    jem.loss.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    x, y = bars(8, torch.Generator().manual_seed(0))
    jem.training_step(x, y, generator=torch.Generator().manual_seed(1))
    batch = inputs[0]
    assert batch[Energies].positive.shape == batch[ConditionalEnergies].positive.shape == (8,)  # every data row
    assert batch[Energies].negative.shape == batch[ConditionalEnergies].negative.shape == (3,)
    assert batch[Classification].logits.shape == (8, 3)
    default = tiny_jem(loss=loss, sampler=Langevin(0.1, n_steps=2), unconditional_chains=chains)
    assert default.negatives_per_step(x) == 8  # one chain per data row
    with pytest.raises(ValueError, match="n_negatives"):
        tiny_jem(n_negatives=0)


def test_mixture_chains_are_the_negatives_of_both_terms():
    loss = jem_loss(p_x_weight=1.0, p_x_given_y_weight=1.0, regularization_weight=0.1)
    jem = tiny_jem(loss=loss, sampler=Langevin(0.1, n_steps=2), unconditional_chains="mixture")
    calls = count_calls(jem.model.network)
    inputs = []
    jem.loss.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    metrics = jem.training_step(*bars(8, torch.Generator().manual_seed(0)), generator=torch.Generator().manual_seed(1))
    assert calls[0] == 2 + 1  # one chain of 2 steps (conditional) + one shared pass
    batch = inputs[0]
    energies, conditional = batch[Energies], batch[ConditionalEnergies]
    assert energies.negative.shape == conditional.negative.shape == (8,)
    # E(x-) = -logsumexp f(x-) <= E(x-, y-) = -f(x-)[y-] for the same chains
    assert bool((energies.negative <= conditional.negative + 1e-6).all())
    assert all(torch.isfinite(v) for v in metrics.values())


def test_mixture_chains_draw_uniform_classes_for_the_p_x_term_and_for_generate():
    jem = tiny_jem(loss=jem_loss(p_x_weight=1.0), sampler=Langevin(0.1, n_steps=2))
    jem.unconditional_chains = "mixture"
    inputs = []
    jem.loss.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    jem.training_step(*bars(8, torch.Generator().manual_seed(0)), generator=torch.Generator().manual_seed(1))
    assert Energies in inputs[0] and ConditionalEnergies not in inputs[0]  # no conditional term
    mixed = jem.generate(6, start=torch.zeros(6, 1, 6, 6), generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    classes = torch.randint(3, (6,), generator=g)
    assert torch.equal(mixed, jem.generate(6, y=classes, start=torch.zeros(6, 1, 6, 6), generator=g))
    jem.unconditional_chains = "marginal"
    marginal = jem.generate(6, start=torch.zeros(6, 1, 6, 6), generator=torch.Generator().manual_seed(2))
    assert not torch.equal(marginal, mixed)


def test_unconditional_chains_must_be_a_known_kind_with_class_slots():
    with pytest.raises(ValueError, match=r"unconditional_chains must be one of \('marginal', 'mixture'\), got 'mixed'"):
        tiny_jem(unconditional_chains="mixed")
    with pytest.raises(ValueError, match="give the buffer n_classes"):
        tiny_jem(buffer=ReplayBuffer(60, UniformInit((1, 6, 6))), unconditional_chains="mixture")


def test_classification_only_loss_draws_no_negatives():
    jem = tiny_jem(loss=WeightedSum({"ce": (1.0, CrossEntropy())}))
    before = jem.buffer.samples.clone()
    calls = count_calls(jem.model.network)
    jem.training_step(*bars(8, torch.Generator().manual_seed(0)))
    assert calls[0] == 1 and torch.equal(jem.buffer.samples, before)


@pytest.mark.parametrize(
    "sampler, buffer",
    [
        (MALA(step_size=0.01, n_steps=3), None),
        (HMC(step_size=0.01, n_leapfrog=2, n_steps=2), None),
        (None, ReplayBuffer(64, GaussianInit((1, 6, 6), std=0.3), reinit_prob=0.2)),
    ],
)
def test_parts_swap_without_changing_the_recipe(sampler, buffer):
    jem = tiny_jem(sampler=sampler, buffer=buffer)
    metrics = jem.training_step(*bars(8, torch.Generator().manual_seed(0)), generator=torch.Generator().manual_seed(0))
    assert {"loss", "p_y_given_x/accuracy", "p_x/energy_gap"} <= set(metrics)


def test_training_step_is_reproducible_under_a_seed():
    results = []
    for _ in range(2):
        jem, g = tiny_jem(), torch.Generator().manual_seed(5)
        for _ in range(3):
            jem.training_step(*bars(8, g), generator=g)
        results.append((jem.buffer.samples.clone(), [p.detach().clone() for p in jem.model.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1], strict=True))


@pytest.mark.parametrize(
    "x, y, error, message",
    [
        (torch.zeros(4, 1, 5, 5), torch.zeros(4, dtype=torch.long), ValueError, r"shape \(B, 1, 6, 6\)"),
        (torch.zeros(4, 1, 6, 6, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), TypeError, "floating"),
        (torch.full((4, 1, 6, 6), float("nan")), torch.zeros(4, dtype=torch.long), ValueError, "NaN"),
        (torch.zeros(4, 1, 6, 6), torch.tensor([0, 1, 2, 3]), ValueError, r"\[0, 2\]"),
        (torch.zeros(4, 1, 6, 6), None, ValueError, "needs labels"),
        (torch.zeros(0, 1, 6, 6), torch.zeros(0, dtype=torch.long), ValueError, "non-empty"),
    ],
)
def test_bad_training_data_is_a_clear_error(x, y, error, message):
    jem = tiny_jem()
    before = [p.detach().clone() for p in jem.model.parameters()]
    with pytest.raises(error, match=message):
        jem.training_step(x, y)
    assert all(torch.equal(a, b) for a, b in zip(before, jem.model.parameters(), strict=True))


def test_jem_rejects_a_buffer_with_other_classes():
    with pytest.raises(ValueError, match="n_classes"):
        tiny_jem(buffer=ReplayBuffer(20, UniformInit((1, 6, 6)), n_classes=2))


def test_generate_starts_chains_from_an_initializer_given_points_or_the_buffer():
    jem, g = tiny_jem(), torch.Generator().manual_seed(0)
    start = torch.zeros(4, 1, 6, 6)
    zero_steps = jem.generate(4, start=start, n_steps=0, generator=g)
    assert torch.equal(zero_steps, start)  # no steps: the given points come back
    from_init = jem.generate(4, start=GaussianInit((1, 6, 6), mean=5.0, std=0.1), n_steps=0, generator=g)
    assert float(from_init.mean()) == pytest.approx(5.0, abs=0.1)
    from_buffer = jem.generate(4, n_steps=0, generator=g)  # the buffer's UniformInit on [-1, 1]
    assert float(from_buffer.abs().max()) <= 1.0
    with pytest.raises(ValueError, match=r"start must have shape \(4, 1, 6, 6\), got \(3, 1, 6, 6\)"):
        jem.generate(4, start=torch.zeros(3, 1, 6, 6))
    with pytest.raises(TypeError, match="start must be an Initializer, a Tensor or None, got str"):
        jem.generate(4, start="noise")


def test_the_recipes_implement_the_recipe_protocol():
    from ebmlib.recipes import Recipe

    jem = tiny_jem()
    assert isinstance(jem, Recipe)
    assert jem.optimizers() == [jem.optimizer] and jem.data_parallel_modules() == [jem.model]
    before = jem.buffer.samples.clone()
    jem.restart_chains(torch.Generator().manual_seed(1))
    assert not torch.equal(before, jem.buffer.samples)


def short_run(seed: int = 0) -> ShortRunEBM:
    torch.manual_seed(seed)
    model = NetworkEnergy(MLP(2, 1, hidden=64, depth=3))
    loss = WeightedSum({"cd": (1.0, ContrastiveDivergence()), "l2": (0.1, EnergyRegularization())})
    return ShortRunEBM(model, Langevin(step_size=0.05, noise_std=0.05, n_steps=20), UniformInit((2,), -3, 3),
                       torch.optim.Adam(model.parameters(), lr=1e-2), loss)


@pytest.mark.slow
def test_short_run_ebm_moves_its_short_run_samples_towards_the_target():
    recipe, g = short_run(), torch.Generator().manual_seed(0)
    target = sample_toy("eight_gaussians", 1000, torch.Generator().manual_seed(1))

    def distance() -> float:  # the model is trained for 20-step runs from noise: sample it that way
        return float(mmd(recipe.generate(1000, generator=torch.Generator().manual_seed(2)), target))

    before = distance()
    for _ in range(300):
        recipe.training_step(sample_toy("eight_gaussians", 256, g), generator=g)
    after = distance()
    # Measured with these seeds: 0.160 -> 0.018 (two target samples differ by ~0.005). Required: a 3x drop.
    assert after < before / 3, (before, after)
    assert len(recipe.state_dict()) == len(recipe.model.state_dict()) + 1  # no chains kept: model + initializer


def test_short_run_ebm_keeps_nothing_between_steps_and_restart_is_a_no_op():
    recipe = short_run()
    state = {k: v.clone() for k, v in recipe.state_dict().items() if not k.startswith("model.")}
    recipe.restart_chains(torch.Generator().manual_seed(0))
    recipe.training_step(torch.randn(8, 2), generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(v, recipe.state_dict()[k]) for k, v in state.items())


@pytest.mark.parametrize("make", [lambda: tiny_jem(), lambda: short_run()], ids=["jem", "short_run"])
def test_unscaled_images_get_one_warning_naming_the_expected_range(make):
    recipe = make()
    shape = recipe.initializer.event_shape
    x = torch.rand(8, *shape) * 255  # pixels left in 0..255
    y = torch.randint(3, (8,)) if isinstance(recipe, JEM) else None
    bound = r"0\.99\d*, 1|1, 1" if isinstance(recipe, JEM) else r"2\.99\d*, 3"  # chains start in [-1, 1], [-3, 3]
    with pytest.warns(UserWarning, match=rf"x has values in \[.*, 25\d.*\], far outside \[-({bound})\] "
                                         r"where the sampling chains start.*x / 127.5 - 1"):
        recipe.training_step(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recipe.training_step(x, y)  # once per recipe
        make().training_step(x / 127.5 - 1, y)  # scaled data: no warning
