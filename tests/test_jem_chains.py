"""JEM's p(x) chains: mixture chains for the first ``mixture_steps`` steps, then chains on E(x) itself."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.models import ClassifierEnergy
from ebmlib.recipes import JEM, jem_loss
from ebmlib.samplers import Langevin


def make_jem(mixture_steps: int = 3, n_classes: int | None = 3, **kwargs) -> JEM:
    torch.manual_seed(0)
    model = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), n_classes=3)
    return JEM(model, Langevin(step_size=0.1, noise_std=0.01, n_steps=2),
               ReplayBuffer(30, UniformInit((1, 2, 2)), n_classes=n_classes),
               torch.optim.SGD(model.parameters(), lr=0.01), jem_loss(regularization_weight=0.1),
               mixture_steps=mixture_steps, **kwargs)


class SpySampler(Langevin):
    """Langevin that records whether each call ran class-conditional chains (y given) or chains on E(x)."""

    def __init__(self) -> None:
        super().__init__(step_size=0.1, noise_std=0.01, n_steps=2)
        self.conditional: list[bool] = []

    def sample(self, model, x, n_steps=None, y=None, generator=None, **kwargs):
        self.conditional.append(y is not None)
        return super().sample(model, x, n_steps=n_steps, y=y, generator=generator, **kwargs)


def test_the_p_x_negatives_are_mixture_chains_first_then_chains_on_the_marginal_energy():
    jem = make_jem(mixture_steps=3)
    jem.sampler = spy = SpySampler()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 1, 2, 2) * 2 - 1, torch.arange(6) % 3
    kinds = []
    for _ in range(5):
        kinds.append(jem.p_x_chains)
        jem.training_step(x, y, generator=g)
    assert kinds == ["mixture"] * 3 + ["marginal"] * 2
    assert spy.conditional == [True] * 3 + [False] * 2  # what the sampler was asked to run
    assert jem.steps_taken == 5
    assert jem.generate(4, generator=g).shape == (4, 1, 2, 2) and spy.conditional[-1] is False  # generate: E(x)


def test_the_step_count_is_saved_so_a_resumed_run_switches_at_the_same_step():
    jem = make_jem(mixture_steps=3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 1, 2, 2) * 2 - 1, torch.arange(6) % 3
    for _ in range(2):
        jem.training_step(x, y, generator=g)
    state = jem.state_dict()
    assert int(state["steps_taken"]) == 2
    fresh = make_jem(mixture_steps=3)
    fresh.load_state_dict(state)
    assert fresh.steps_taken == 2 and fresh.p_x_chains == "mixture"
    fresh.training_step(x, y, generator=g)
    assert fresh.p_x_chains == "marginal"


@pytest.mark.parametrize("kwargs, message", [
    ({"n_classes": None}, "needs unconditional_chains=\"marginal\" and a buffer with n_classes"),
    ({"unconditional_chains": "mixture"}, "needs unconditional_chains=\"marginal\""),
])
def test_mixture_steps_need_class_chains_and_marginal_chains_after(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_jem(mixture_steps=3, **kwargs)
    with pytest.raises(TypeError, match="mixture_steps must be an integer"):
        make_jem(mixture_steps=2.5)
