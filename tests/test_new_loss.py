"""Adding a loss with new inputs: denoising score matching, written here in two pieces.

1. the loss and the typed input it reads (``NoisyScores``), next to each other;
2. one recipe method, ``loss_inputs``, overridden to compute that input (everything else is the
   library's ``ShortRunEBM``).

Nothing in ebmlib changes. mypy checks the new loss's reads like every other loss's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor

from ebmlib.buffers import UniformInit
from ebmlib.losses import ContrastiveDivergence, EnergyBatch, Loss, LossInput, WeightedSum
from ebmlib.models import MLP, NetworkEnergy
from ebmlib.recipes import ShortRunEBM
from ebmlib.samplers import Langevin
from ebmlib.training import Trainer

NOISE_STD = 0.3
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ 1. the loss and its input
@dataclass(frozen=True)
class NoisyScores(LossInput):
    """Data perturbed by Gaussian noise, the noise, and the model's score at the perturbed data."""

    noise: Tensor  # epsilon ~ N(0, I), shape (B, *event_shape)
    score: Tensor  # -grad_x E(x + sigma * epsilon), differentiable in the parameters


class DenoisingScoreMatching(Loss):
    """L = mean || sigma * s(x + sigma * eps) + eps ||^2 / 2 (Vincent, 2011)."""

    def needs(self) -> frozenset[type[LossInput]]:
        return frozenset({NoisyScores})

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        inputs = batch[NoisyScores]
        residual = NOISE_STD * inputs.score + inputs.noise
        loss = 0.5 * residual.flatten(1).pow(2).sum(1).mean()
        return loss, {"score_norm": inputs.score.detach().flatten(1).norm(dim=1).mean()}


# ------------------------------------------------------------------------------ 2. one recipe method
class DenoisingEBM(ShortRunEBM):
    def loss_inputs(self, needs, x, y, generator):
        batch = super().loss_inputs(needs - {NoisyScores}, x, y, generator)
        if NoisyScores not in needs:
            return batch
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        noisy = (x + NOISE_STD * noise).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.model(noisy).sum(), noisy, create_graph=True)
        return EnergyBatch(*(batch[kind] for kind in batch.kinds()), NoisyScores(noise, -grad))


# ------------------------------------------------------------------------------ tests
MEAN, STD = torch.tensor([1.0, -0.5]), 0.5


def gaussian(n: int, generator: torch.Generator) -> Tensor:
    return MEAN + STD * torch.randn(n, 2, generator=generator)


def make_recipe(loss: Loss) -> DenoisingEBM:
    torch.manual_seed(0)
    model = NetworkEnergy(MLP(2, 1, hidden=32, depth=2))
    return DenoisingEBM(model, Langevin(step_size=0.01, n_steps=5), UniformInit((2,), -3, 3),
                        torch.optim.Adam(model.parameters(), lr=1e-2), loss)


def test_denoising_score_matching_learns_the_score_of_a_gaussian_without_sampling():
    recipe = make_recipe(DenoisingScoreMatching())
    calls, sample = [], recipe.sampler.sample
    recipe.sampler.sample = lambda *a, **k: calls.append(1) or sample(*a, **k)  # type: ignore[method-assign]
    loader = [gaussian(128, torch.Generator().manual_seed(i)) for i in range(300)]
    trainer = Trainer(recipe, device="cpu", seed=0, progress=False, refresh_every=50)
    trainer.fit(loader, epochs=1)
    assert calls == []  # DSM draws no negatives
    # The score of the noised data N(mean, (std^2 + sigma^2) I) is -(x - mean) / (std^2 + sigma^2).
    x = gaussian(500, torch.Generator().manual_seed(1000))
    expected = -(x - MEAN) / (STD**2 + NOISE_STD**2)
    learned = recipe.model.score(x)
    cosine = torch.nn.functional.cosine_similarity(learned, expected, dim=1).mean()
    # Measured with these seeds: 0.985 (0.011 before training). Required: > 0.9.
    assert float(cosine) > 0.9, float(cosine)
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]


def test_the_new_input_combines_with_the_library_ones_in_one_step():
    recipe = make_recipe(WeightedSum({"dsm": (1.0, DenoisingScoreMatching()), "cd": (0.1, ContrastiveDivergence())}))
    metrics = recipe.training_step(gaussian(16, torch.Generator().manual_seed(0)),
                                   generator=torch.Generator().manual_seed(1))
    assert {"loss/dsm", "dsm/score_norm", "loss/cd", "cd/energy_gap"} <= set(metrics)


def test_a_recipe_that_cannot_compute_an_input_says_so_before_training():
    model = NetworkEnergy(MLP(2, 1, hidden=8))
    recipe = ShortRunEBM(model, Langevin(step_size=0.01, n_steps=2), UniformInit((2,)),
                         torch.optim.SGD(model.parameters(), lr=0.1), DenoisingScoreMatching())
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="DenoisingScoreMatching needs NoisyScores, which ShortRunEBM does not "
                                         "compute.*override loss_inputs"):
        recipe.training_step(torch.randn(4, 2))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.slow
def test_mypy_catches_a_misspelt_input_or_field(tmp_path):
    pytest.importorskip("mypy", reason="needs mypy: pip install -e '.[test]'")
    source = tmp_path / "typo.py"
    source.write_text(textwrap.dedent("""
        from torch import Tensor

        from ebmlib.losses import Classification, Energies, EnergyBatch


        def gap(batch: EnergyBatch) -> Tensor:
            return batch[Energies].postive.mean()


        def accuracy(batch: EnergyBatch) -> Tensor:
            return batch[Clasification].logits.argmax(1)
        """))
    environment = {**os.environ, "MYPYPATH": str(ROOT)}
    finished = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent", "--no-error-summary",
         "--cache-dir", str(tmp_path / "cache"), str(source)],
        env=environment, capture_output=True, text=True, timeout=300)
    assert '"Energies" has no attribute "postive"' in finished.stdout, finished.stdout
    assert 'Name "Clasification" is not defined' in finished.stdout, finished.stdout
