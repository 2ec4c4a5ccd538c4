"""Draw docs/_static/generated/samplers.png: ebmlib's samplers on a known 2D energy (about 10 s).

The target is an equal mixture of two Gaussians (means (+-1.5, 0), std 0.5). Each
sampler runs 2000 chains from uniform noise on [-3, 3]^2 for 200 steps.
"""

from __future__ import annotations

import torch
from plotting import plt, save, show_density, show_points
from torch import Tensor

from ebmlib.models import EnergyModel
from ebmlib.samplers import HMC, MALA, Langevin


class TwoGaussians(EnergyModel):
    """E(x) = -log(N(x; m1, s^2 I) + N(x; m2, s^2 I)) up to a constant."""

    def __init__(self, separation: float = 1.5, std: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("means", torch.tensor([[-separation, 0.0], [separation, 0.0]]))
        self.std = std

    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        squared = (x.unsqueeze(1) - self.means).pow(2).sum(-1)  # (B, 2)
        return -torch.logsumexp(-squared / (2 * self.std**2), dim=1)


SAMPLERS = {
    "Langevin, exact noise\nstep 0.05, noise sqrt(0.1)": Langevin(step_size=0.05),
    "Langevin, JEM-style noise\nstep 0.05, noise 0.01": Langevin(step_size=0.05, noise_std=0.01),
    "MALA, step 0.05": MALA(step_size=0.05),
    "HMC, step 0.2, 5 leapfrog": HMC(step_size=0.2, n_leapfrog=5),
}

if __name__ == "__main__":
    torch.set_num_threads(1)
    model = TwoGaussians()
    generator = torch.Generator().manual_seed(0)
    start = 6 * torch.rand(2000, 2, generator=generator) - 3
    fig, axes = plt.subplots(1, 1 + len(SAMPLERS), figsize=(3 * (1 + len(SAMPLERS)), 3.4))
    show_density(axes[0], model, "target $e^{-E(x)}$")
    for ax, (title, sampler) in zip(axes[1:], SAMPLERS.items(), strict=True):
        samples, diagnostics = sampler.sample(model, start, n_steps=200, generator=generator, return_diagnostics=True)
        if "acceptance_rate" in diagnostics:
            title += f"\nacceptance {float(diagnostics['acceptance_rate'][-50:].mean()):.2f}"
        show_points(ax, samples, title, color="tab:red")
    save(fig, "samplers.png")
