import torch

from ebmlib import EBM, Langevin, NetworkEnergy, ReplayBuffer, UniformInit, WeightedSum
from ebmlib.data import sample_toy
from ebmlib.losses import ContrastiveDivergence, EnergyRegularization
from ebmlib.models import MLP
from ebmlib.training import Trainer

torch.set_num_threads(1)  # a small model: one thread is fastest, and never spins on busy cores
torch.manual_seed(0)  # the network's initial weights and the buffer's first chains
# Data: 1000 batches of 128 points from a mixture of eight Gaussians on a circle.
data = torch.Generator().manual_seed(0)
batches = [sample_toy("eight_gaussians", 128, generator=data) for _ in range(1000)]

# The parts: an energy E(x) = MLP(x), Langevin chains kept in a replay buffer, a loss.
model = NetworkEnergy(MLP(2, 1, hidden=64, depth=3))
sampler = Langevin(step_size=0.01, n_steps=20)  # noise_std defaults to sqrt(2 * step_size)
buffer = ReplayBuffer(capacity=8192, initializer=UniformInit((2,), low=-3.0, high=3.0))
loss = WeightedSum({"cd": (1.0, ContrastiveDivergence()), "l2": (0.1, EnergyRegularization())})
recipe = EBM(model, sampler, buffer, torch.optim.Adam(model.parameters(), lr=1e-2), loss=loss)

# Train for one pass over the batches, then run 2000 fresh chains for 300 steps.
trainer = Trainer(recipe, device="cpu", seed=0)
trainer.fit(batches, epochs=1)
samples = recipe.generate(2000, n_steps=300, generator=trainer.generator)
print(samples.shape, "energy gap:", trainer.history[-1]["cd/energy_gap"])
