r"""
One toy, four ways to train an energy: CD, DSM, SSM and NCE
===========================================================

The same small network learns the same 2D density four ways, through the same
:class:`~ebmlib.training.Trainer`:

- **CD**, contrastive divergence with persistent Langevin chains
  (:class:`~ebmlib.recipes.EBM`, :class:`~ebmlib.losses.ContrastiveDivergence`);
- **DSM**, denoising score matching, :math:`\sigma = 0.1`
  (:class:`~ebmlib.recipes.ScoreMatchingEBM`, :class:`~ebmlib.losses.DenoisingScoreMatching`);
- **SSM**, sliced score matching (:class:`~ebmlib.losses.SlicedScoreMatching`);
- **NCE**, noise-contrastive estimation against :math:`\mathcal{N}(0, 2^2 I)` with a learnable
  :math:`\log Z` (:class:`~ebmlib.recipes.NoiseContrastiveEBM`).

Only CD runs a sampler during training. The target is an equal mixture of four Gaussians
(std 0.5 at :math:`(\pm 1.5, \pm 1.5)`), whose density is known, so each learned density
:math:`e^{-E}/Z` (normalised on a grid) is scored by its KL divergence from the truth.
"""

# %%
import math

import matplotlib.pyplot as plt
import torch

from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.evaluation import energy_grid, plot_energy_landscape
from ebmlib.losses import NoiseContrastiveEstimation, SlicedScoreMatching
from ebmlib.models import MLP, NetworkEnergy
from ebmlib.recipes import EBM, GaussianNoise, NoiseContrastiveEBM, ScoreMatchingEBM
from ebmlib.samplers import Langevin
from ebmlib.training import Trainer

CENTERS = torch.tensor([[1.5, 1.5], [-1.5, 1.5], [-1.5, -1.5], [1.5, -1.5]])
STD = 0.5
BOUNDS = (-4.0, 4.0, -4.0, 4.0)


def sample_mixture(n, generator):
    return CENTERS[torch.randint(4, (n,), generator=generator)] + STD * torch.randn(n, 2, generator=generator)


class Mixture(torch.nn.Module):
    """The exact energy, -log p(x)."""

    def forward(self, x):
        squared = (x[:, None, :] - CENTERS).pow(2).sum(-1)
        return -(torch.logsumexp(-squared / (2 * STD**2), 1) - math.log(4 * 2 * math.pi * STD**2))


# %%
# The four recipes
# ----------------
# Each gets a fresh copy of the same network (seed 0) and Adam at learning rate 3e-3.


def network():
    torch.manual_seed(0)
    return NetworkEnergy(MLP(2, 1, hidden=64, depth=2))


def contrastive_divergence():
    model = network()
    return EBM(model, Langevin(step_size=0.01, n_steps=15), ReplayBuffer(1000, UniformInit((2,), -4, 4)),
               torch.optim.Adam(model.parameters(), lr=3e-3))


def denoising_score_matching():
    model = network()
    return ScoreMatchingEBM(model, torch.optim.Adam(model.parameters(), lr=3e-3), (2,), noise_std=0.1)


def sliced_score_matching():
    model = network()
    return ScoreMatchingEBM(model, torch.optim.Adam(model.parameters(), lr=3e-3), (2,), SlicedScoreMatching())


def noise_contrastive_estimation():
    model, loss = network(), NoiseContrastiveEstimation()
    optimizer = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=3e-3)
    return NoiseContrastiveEBM(model, GaussianNoise(torch.zeros(2), torch.full((2,), 2.0)), optimizer, loss,
                               noise_ratio=4)


recipes = {"CD": contrastive_divergence(), "DSM": denoising_score_matching(), "SSM": sliced_score_matching(),
           "NCE": noise_contrastive_estimation()}

# %%
# Training: 400 batches of 128 points, one epoch, the same data for every method.
loader = [sample_mixture(128, torch.Generator().manual_seed(i)) for i in range(400)]
for recipe in recipes.values():
    Trainer(recipe, device="cpu", seed=0, progress=False, refresh_every=100).fit(loader, epochs=1)

# %%
# How close each learned density is: :math:`\mathrm{KL}(p \,\Vert\, q)` on a 121 x 121 grid.
_, _, exact = energy_grid(Mixture(), BOUNDS, resolution=121)
cell = (8 / 120) ** 2
scores = {}
for name, recipe in recipes.items():
    _, _, learned = energy_grid(recipe.model, BOUNDS, resolution=121)
    scores[name] = float((exact.exp() * (exact - learned)).sum() * cell)
    print(f"{name}: KL(p || q) = {scores[name]:.3f} nats")
print(f"NCE's learned log Z: {float(recipes['NCE'].loss.log_normalizer.detach()):.3f}")

# %%
# Side by side
# ------------
# The learned densities with 500 data points (red), next to the exact one.
data = sample_mixture(500, torch.Generator().manual_seed(10_000))
figure, axes = plt.subplots(1, 5, figsize=(15, 3.4), layout="constrained")
plot_energy_landscape(axes[0], Mixture(), data, BOUNDS, density=True, title="exact density")
for axis, (name, recipe) in zip(axes[1:], recipes.items(), strict=True):
    plot_energy_landscape(axis, recipe.model, data, BOUNDS, density=True, title=f"{name}: KL {scores[name]:.2f}")
plt.show()
