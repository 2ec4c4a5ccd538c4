"""Contract suite: every Recipe exported by ebmlib.recipes keeps the protocol the training layer relies on.

Every concrete ``Recipe`` subclass exported by ``ebmlib.recipes`` must have a factory in ``RECIPES`` (checked
below), so a new recipe can't be left out of the suite.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
import torch
from torch import nn

import ebmlib.recipes
from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.losses import (
    ContrastiveDivergence,
    EnergyRegularization,
    NoiseContrastiveEstimation,
    SlicedScoreMatching,
    WeightedSum,
)
from ebmlib.models import MLP, ClassifierEnergy, NetworkEnergy
from ebmlib.recipes import (
    EBM,
    JEM,
    EnergyMatchingEBM,
    EquilibriumMatchingEBM,
    GaussianNoise,
    ImprovedContrastiveEBM,
    NoiseContrastiveEBM,
    Recipe,
    ScoreMatchingEBM,
    ShortRunEBM,
    jem_loss,
)
from ebmlib.samplers import Langevin
from ebmlib.training.resume import process_local_state


def ebm() -> EBM:
    model = NetworkEnergy(MLP(2, 1, hidden=8))
    return EBM(model, Langevin(step_size=0.01, n_steps=2), ReplayBuffer(32, UniformInit((2,), -3, 3)),
               torch.optim.Adam(model.parameters(), lr=1e-2), input_noise_std=0.01)


def jem() -> JEM:
    model = ClassifierEnergy(MLP(2, 3, hidden=8), n_classes=3)
    loss = jem_loss(p_x_given_y_weight=1.0, regularization_weight=0.1)
    return JEM(model, Langevin(step_size=0.01, n_steps=2), ReplayBuffer(30, UniformInit((2,), -3, 3), n_classes=3),
               torch.optim.Adam(model.parameters(), lr=1e-2), loss)


def short_run() -> ShortRunEBM:
    model = NetworkEnergy(MLP(2, 1, hidden=8))
    loss = WeightedSum({"cd": (1.0, ContrastiveDivergence()), "l2": (0.1, EnergyRegularization())})
    return ShortRunEBM(model, Langevin(step_size=0.01, n_steps=2), UniformInit((2,), -3, 3),
                       torch.optim.SGD(model.parameters(), lr=1e-2), loss)


def denoising_score_matching() -> ScoreMatchingEBM:
    model = NetworkEnergy(MLP(2, 1, hidden=8))
    return ScoreMatchingEBM(model, torch.optim.Adam(model.parameters(), lr=1e-2), (2,), noise_std=[0.1, 0.5])


def sliced_score_matching() -> ScoreMatchingEBM:
    model = NetworkEnergy(MLP(2, 1, hidden=8))
    return ScoreMatchingEBM(model, torch.optim.Adam(model.parameters(), lr=1e-2), (2,), SlicedScoreMatching())


def noise_contrastive() -> NoiseContrastiveEBM:
    model, loss = NetworkEnergy(MLP(2, 1, hidden=8)), NoiseContrastiveEstimation()
    optimizer = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-2)
    return NoiseContrastiveEBM(model, GaussianNoise(torch.zeros(2), torch.ones(2)), optimizer, loss, noise_ratio=2)


def improved_contrastive() -> ImprovedContrastiveEBM:
    model = NetworkEnergy(MLP(2, 1, hidden=8))
    buffer = ReplayBuffer(32, UniformInit((2,), -3, 3))
    return ImprovedContrastiveEBM(model, Langevin(step_size=0.01, n_steps=2), buffer,
                                  torch.optim.Adam(model.parameters(), lr=1e-2), kl_step_size=0.01)


def equilibrium_matching() -> EquilibriumMatchingEBM:
    model = NetworkEnergy(MLP(2, 1, hidden=8))
    return EquilibriumMatchingEBM(model, torch.optim.Adam(model.parameters(), lr=1e-2), (2,))


def energy_matching() -> EnergyMatchingEBM:
    model = NetworkEnergy(MLP(2, 1, hidden=8))
    return EnergyMatchingEBM(model, Langevin(step_size=0.01, noise_std=0.03, n_steps=2),
                             torch.optim.Adam(model.parameters(), lr=1e-2), (2,), warmup_steps=1,
                             flow_sampler=Langevin(step_size=0.5, noise_std=0.0, n_steps=2))


RECIPES: dict[str, Callable[[], Recipe]] = {
    "ebm": ebm, "jem": jem, "short_run": short_run, "denoising_score_matching": denoising_score_matching,
    "sliced_score_matching": sliced_score_matching, "noise_contrastive": noise_contrastive,
    "improved_contrastive": improved_contrastive,
    "equilibrium_matching": equilibrium_matching, "energy_matching": energy_matching}
LABELLED = {"jem"}


def test_every_exported_recipe_is_in_the_suite():
    exported = {obj for name in ebmlib.recipes.__all__ if inspect.isclass(obj := getattr(ebmlib.recipes, name))
                and issubclass(obj, Recipe) and not inspect.isabstract(obj)}
    assert exported == {type(make()) for make in RECIPES.values()}


@pytest.fixture(params=sorted(RECIPES))
def name(request) -> str:
    return request.param


def make(name: str, seed: int = 0) -> Recipe:
    torch.manual_seed(seed)
    return RECIPES[name]()


def batch(name: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 2, generator=g), (torch.randint(3, (8,), generator=g) if name in LABELLED else None)


def parameters(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_training_step_returns_detached_scalar_metrics_and_trains(name):
    recipe = make(name)
    before = parameters(recipe)
    metrics = recipe.training_step(*batch(name), generator=torch.Generator().manual_seed(0))
    assert "loss" in metrics and all(isinstance(v, torch.Tensor) for v in metrics.values())
    assert all(v.shape == () and not v.requires_grad and torch.isfinite(v) for v in metrics.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, recipe.parameters(), strict=True))


def test_optimizers_step_exactly_the_data_parallel_parameters(name):
    recipe = make(name)
    optimizers = recipe.optimizers()
    assert optimizers and all(isinstance(o, torch.optim.Optimizer) for o in optimizers)
    stepped = {id(p) for o in optimizers for g in o.param_groups for p in g["params"]}
    parallel = {id(p) for m in recipe.data_parallel_modules() for p in m.parameters()}
    owned = {id(p) for p in recipe.parameters()}
    assert parallel and parallel <= owned and stepped == parallel


def test_same_seed_same_steps(name):
    runs = []
    for _ in range(2):
        recipe, g = make(name), torch.Generator().manual_seed(5)
        for step in range(2):
            recipe.training_step(*batch(name, step), generator=g)
        runs.append(recipe.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_state_dict_round_trip_restores_the_state(name):
    recipe = make(name)
    saved = {k: v.clone() for k, v in recipe.state_dict().items()}
    recipe.training_step(*batch(name), generator=torch.Generator().manual_seed(0))
    other = make(name, seed=1)
    other.load_state_dict(saved)
    recipe.load_state_dict(saved)
    assert all(torch.equal(saved[k], v) and torch.equal(saved[k], other.state_dict()[k])
               for k, v in recipe.state_dict().items())


def test_restart_chains_touches_only_the_process_local_state(name):
    recipe = make(name)
    shared = parameters(recipe)
    recipe.restart_chains(torch.Generator().manual_seed(3))
    recipe.restart_chains()  # the generator is optional
    assert all(torch.equal(a, b) for a, b in zip(shared, recipe.parameters(), strict=True))
    local = process_local_state(recipe)
    assert not any(key.startswith("model.") for key in local)


def test_bad_data_is_refused_before_any_parameter_changes(name):
    recipe = make(name)
    before = parameters(recipe)
    x, y = batch(name)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        recipe.training_step(x[:, :1], y)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        recipe.check_inputs(x[:, :1], y)
    assert all(torch.equal(a, b) for a, b in zip(before, recipe.parameters(), strict=True))
