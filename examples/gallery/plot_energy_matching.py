r"""
Energy matching against contrastive divergence, for the same gradient evaluations
=================================================================================

Energy matching (:class:`~ebmlib.recipes.EnergyMatchingEBM`; Balcerak et al., 2025) trains
one scalar energy :math:`E(x)` in two phases: first its flow :math:`-\nabla_x E` by
flow matching on straight paths from Gaussian noise to the data, paired by a mini-batch
optimal-transport plan (no sampling: one gradient evaluation per data point), then the
same loss plus contrastive divergence against negatives drawn from the energy
(the flow from noise, then Langevin). Its samples follow the same route: noise, 25 steps
along the flow, 10 Langevin steps.

Plain contrastive divergence (:class:`~ebmlib.recipes.EBM`, persistent Langevin chains)
gets as many gradient evaluations :math:`\nabla_x E` in all, sampler steps included. The
target is a mixture of four Gaussians (std 0.2 on a circle of radius 2) with **unequal**
weights 0.4, 0.3, 0.2, 0.1 (counter-clockwise from the right). The flow carries the noise
to each mode in proportion to its weight; chains of a contrastive energy started from
noise end in the basin they start in. Each sample is scored by
:func:`~ebmlib.evaluation.grid_kl`: the KL divergence of the data's histogram from the
samples' on a 32 x 32 grid (a fresh draw of the data scores about 0.006).
"""

# %%
import math

import matplotlib.pyplot as plt
import torch

from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.evaluation import grid_kl, plot_energy_landscape
from ebmlib.models import MLP, NetworkEnergy
from ebmlib.recipes import EBM, EnergyMatchingEBM
from ebmlib.samplers import Langevin
from ebmlib.training import Trainer

CENTERS = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
WEIGHTS = torch.tensor([0.4, 0.3, 0.2, 0.1])
BOUNDS = (-3.0, 3.0, -3.0, 3.0)


def sample_mixture(n, generator):
    component = torch.multinomial(WEIGHTS, n, replacement=True, generator=generator)
    return CENTERS[component] + 0.2 * torch.randn(n, 2, generator=generator)


def network():
    torch.manual_seed(0)
    return NetworkEnergy(MLP(2, 1, hidden=64, depth=3))


# %%
# Energy matching
# ---------------
# 600 warm-up steps of flow matching, then 20 steps with contrastive divergence (weight 1).
# The negatives: half start at data points, half at noise moved along the flow
# (25 Euler steps of size 0.04); then 10 Langevin steps at temperature :math:`T = 0.05`
# (``noise_std`` :math:`= \sqrt{2 h T}`).
BATCH, WARMUP, MAIN, FLOW_STEPS, LANGEVIN_STEPS = 128, 600, 20, 25, 10
model = network()
energy_matching = EnergyMatchingEBM(
    model, Langevin(step_size=0.01, noise_std=math.sqrt(2 * 0.01 * 0.05), n_steps=LANGEVIN_STEPS),
    torch.optim.Adam(model.parameters(), lr=5e-3), (2,), warmup_steps=WARMUP,
    flow_sampler=Langevin(step_size=1 / FLOW_STEPS, noise_std=0.0, n_steps=FLOW_STEPS))

# Gradient evaluations: one per data point in the warm-up; then the flow term, the energies of data and
# negatives, the flow of the noise-started half and the Langevin steps of all negatives.
budget = WARMUP * BATCH + MAIN * BATCH * (1 + 2 + FLOW_STEPS / 2 + LANGEVIN_STEPS)

# %%
# Contrastive divergence
# ----------------------
# Persistent chains in a replay buffer of 2000, 10 Langevin steps per training step (the best of 5, 10 and 20
# for this budget): each step costs 12 gradient evaluations per data point.
model = network()
contrastive = EBM(model, Langevin(step_size=0.01, n_steps=10), ReplayBuffer(2000, UniformInit((2,), -3, 3)),
                  torch.optim.Adam(model.parameters(), lr=5e-3))
cd_steps = math.ceil(budget / (BATCH * 12))
print(f"gradient evaluations: energy matching {budget:.0f} in {WARMUP + MAIN} steps, "
      f"contrastive divergence {cd_steps * BATCH * 12} in {cd_steps} steps")

# %%
# Training, on the same stream of batches.
loader = [sample_mixture(BATCH, torch.Generator().manual_seed(i)) for i in range(WARMUP + MAIN)]
Trainer(energy_matching, device="cpu", seed=0, progress=False, refresh_every=100).fit(loader, epochs=1)
Trainer(contrastive, device="cpu", seed=0, progress=False, refresh_every=100).fit(loader[:cd_steps], epochs=1)

# %%
# Samples and scores
# ------------------
# Energy matching samples by its flow and 10 Langevin steps (35 steps); contrastive divergence by 100 Langevin
# steps from uniform noise on the square.
data = sample_mixture(4000, torch.Generator().manual_seed(12345))
samples = {
    "energy matching": energy_matching.generate(2000, generator=torch.Generator().manual_seed(1)),
    "contrastive divergence": contrastive.generate(2000, n_steps=100, generator=torch.Generator().manual_seed(1)),
}
scores = {}
for name, points in samples.items():
    scores[name] = grid_kl(points, data, bins=32, limits=(-3, 3))
    shares = torch.bincount(torch.cdist(points, CENTERS).argmin(dim=1), minlength=4) / len(points)
    print(f"{name}: grid KL {scores[name]:.3f}, modes' shares {[round(float(s), 2) for s in shares]}")

# %%
# Side by side
# ------------
# Each learned energy (dark = low) with 500 of its samples (red), next to the data.
figure, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained")
axes[0].scatter(*data[:500].T, s=2, color="tab:red")
axes[0].set(xlim=BOUNDS[:2], ylim=BOUNDS[2:], aspect="equal", title="data (weights 0.4, 0.3, 0.2, 0.1)")
for axis, (name, recipe) in zip(axes[1:], {"energy matching": energy_matching,
                                          "contrastive divergence": contrastive}.items(), strict=True):
    plot_energy_landscape(axis, recipe.model, samples[name][:500], BOUNDS,
                          title=f"{name}: grid KL {scores[name]:.3f}")
plt.show()
