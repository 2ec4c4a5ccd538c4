"""Tutorial code: an energy model and a sampler of your own, trained by ebmlib's Trainer.

The page ``docs/tutorials/custom_parts.rst`` shows this file piece by piece. Run it
to train on the checkerboard and draw ``docs/_static/generated/custom_parts.png``
(under a minute of CPU time on one core)::

    python3 docs/scripts/custom_parts.py
"""

from __future__ import annotations

# [imports-start]
import torch
from torch import Tensor, nn

from ebmlib import EBM, ContrastiveDivergence, EnergyRegularization, ReplayBuffer, UniformInit, WeightedSum
from ebmlib.data import sample_toy
from ebmlib.models import MLP, EnergyModel
from ebmlib.samplers import ChainState, Sampler, StepInfo, energy_and_grad
from ebmlib.training import Trainer

# [imports-end]
# [energy-model-start]


class FourierEnergy(EnergyModel):
    """E(x) = MLP([sin(x B), cos(x B)]) with fixed random frequencies B ~ N(0, scale^2)."""

    def __init__(self, n_frequencies: int = 32, scale: float = 1.0, hidden: int = 64) -> None:
        super().__init__()
        # A buffer, not a parameter: saved in state_dict(), moved by .to(device), never trained.
        self.register_buffer("frequencies", scale * torch.randn(2, n_frequencies))
        self.network = MLP(2 * n_frequencies, 1, hidden=hidden, depth=2)

    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        projection = x @ self.frequencies  # (B, n_frequencies)
        features = torch.cat([projection.sin(), projection.cos()], dim=1)
        return self.network(features).squeeze(1)  # (B,): one energy per point


# [energy-model-end]
# [sampler-start]


class ReflectedLangevin(Sampler):
    """Exact-noise Langevin dynamics whose chains bounce off the walls of the box [low, high]^d."""

    def __init__(self, step_size: float, low: float, high: float, n_steps: int = 20) -> None:
        super().__init__(n_steps)
        self.step_size, self.low, self.high = step_size, low, high

    def reflect(self, x: Tensor) -> Tensor:
        """Fold every coordinate back into [low, high], as a mirror would."""
        width = self.high - self.low
        folded = torch.remainder(x - self.low, 2 * width)  # in [0, 2 * width)
        return self.low + width - (folded - width).abs()

    def step(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[ChainState, StepInfo]:
        x = state.position
        energy, grad = energy_and_grad(model, x, y)  # dE/dx only: the model's parameters get no gradient
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        proposal = x - self.step_size * grad + (2 * self.step_size) ** 0.5 * noise
        return ChainState(self.reflect(proposal)), StepInfo(energy, grad.flatten(1).norm(dim=1))


# [sampler-end]
# [training-start]


def train(n_batches: int = 1500, seed: int = 0) -> tuple[EBM, Trainer]:
    """Fit FourierEnergy to the checkerboard with ReflectedLangevin negatives."""
    torch.manual_seed(seed)
    data = torch.Generator().manual_seed(seed)
    batches = [sample_toy("checkerboard", 128, generator=data) for _ in range(n_batches)]

    model = FourierEnergy()
    sampler = ReflectedLangevin(step_size=0.005, low=-2.0, high=2.0)  # the checkerboard fills [-2, 2]^2
    buffer = ReplayBuffer(capacity=8192, initializer=UniformInit((2,), low=-2.0, high=2.0))
    loss = WeightedSum({"cd": (1.0, ContrastiveDivergence()), "l2": (0.03, EnergyRegularization())})
    recipe = EBM(model, sampler, buffer, torch.optim.Adam(model.parameters(), lr=1e-2), loss=loss)

    trainer = Trainer(recipe, device="cpu", seed=seed, refresh_every=50)
    trainer.fit(batches, epochs=1)
    return recipe, trainer


# [training-end]

if __name__ == "__main__":
    from plotting import plt, save, show_density, show_points

    torch.set_num_threads(1)  # small networks: one thread is fastest, and fair on a shared machine
    # [sampling-start]
    recipe, trainer = train()
    samples = recipe.generate(2000, n_steps=500, generator=trainer.generator)  # fresh chains, uniform start
    # [sampling-end]
    data = sample_toy("checkerboard", 2000, generator=torch.Generator().manual_seed(1))
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    show_points(axes[0], data, "data", limit=2.0)
    show_density(axes[1], recipe.model, r"FourierEnergy: $-E(x)$", limit=2.0, log=True)
    show_points(axes[2], samples, "ReflectedLangevin samples", limit=2.0, color="tab:red")
    save(fig, "custom_parts.png")
