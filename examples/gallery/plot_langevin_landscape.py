r"""
Langevin chains on a known energy landscape
===========================================

An energy whose density is known exactly, a ring of radius 2 with three bumps,

.. math::

    E(x) = \frac{(r - 2)^2}{2 \cdot 0.25^2} - 1.5 \cos 3\theta,
    \qquad x = (r \cos\theta, r \sin\theta),

and :class:`~ebmlib.samplers.Langevin` chains run on it from uniform noise. The picture
shows the chains falling into the ring, then the angles they settle at against the exact
law: the radial and angular parts of :math:`e^{-E}` separate (the area element
:math:`r\,dr\,d\theta` does not involve :math:`\theta`), so the angle has density
proportional to :math:`e^{1.5 \cos 3\theta}` and
:math:`\mathbb{E}[\cos 3\theta] = I_1(1.5) / I_0(1.5)`, a ratio of Bessel functions.
"""

# %%
# The energy
# ----------
# Any :class:`~ebmlib.models.EnergyModel` maps a batch ``x`` of shape ``(B, 2)`` to
# energies of shape ``(B,)``; the samplers need nothing else.
import math

import matplotlib.pyplot as plt
import torch

from ebmlib.evaluation import chain_trajectory
from ebmlib.models import EnergyModel
from ebmlib.samplers import Langevin

RADIUS, WIDTH, BUMPS = 2.0, 0.25, 1.5


class BumpyRing(EnergyModel):
    """A ring of radius 2 and width 0.25 with three low-energy bumps at angles 0, 120 and 240 degrees."""

    def energy(self, x, y=None):
        r = x.norm(dim=1)
        theta = torch.atan2(x[:, 1], x[:, 0])
        return (r - RADIUS) ** 2 / (2 * WIDTH**2) - BUMPS * torch.cos(3 * theta)


model = BumpyRing()

# %%
# The chains
# ----------
# 4000 chains from uniform noise on :math:`[-3, 3]^2`, 600 Langevin steps of size 0.005
# (noise standard deviation :math:`\sqrt{2 \cdot 0.005} = 0.1` per coordinate), kept every
# 10 steps. Every random draw comes from the generator passed in.
generator = torch.Generator().manual_seed(0)
start = 6 * torch.rand(4000, 2, generator=generator) - 3
sampler = Langevin(step_size=0.005)
trajectory = chain_trajectory(sampler, model, start, n_steps=600, record_every=10, generator=generator)
final = trajectory[-1]

# %%
# The exact answers: the radius has density proportional to
# :math:`r\, e^{-(r - 2)^2 / (2 \cdot 0.25^2)}` (integrated here on a fine grid), the angle
# :math:`e^{1.5 \cos 3\theta}`.
r = torch.linspace(0, 5, 100_001, dtype=torch.float64)
radial = r * torch.exp(-((r - RADIUS) ** 2) / (2 * WIDTH**2))
exact_radius = float(torch.trapezoid(r * radial, r) / torch.trapezoid(radial, r))
exact_cos = float(torch.special.i1(torch.tensor(BUMPS)) / torch.special.i0(torch.tensor(BUMPS)))

radius = final.norm(dim=1)
angle = torch.atan2(final[:, 1], final[:, 0])
print(f"mean radius:    chains {float(radius.mean()):.3f}, exact {exact_radius:.3f}")
print(f"E[cos 3 theta]: chains {float(torch.cos(3 * angle).mean()):.3f}, exact {exact_cos:.3f}")

# %%
# From noise to the ring
# ----------------------
# The energy on a grid (dark is low) with the chains after 0, 10, 50 and 600 steps.
axis = torch.linspace(-3, 3, 200)
grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
with torch.no_grad():
    landscape = model(grid).reshape(200, 200).clamp(max=20)

figure, axes = plt.subplots(2, 2, figsize=(7, 7), sharex=True, sharey=True, layout="constrained")
for ax, step in zip(axes.flat, (0, 10, 50, 600), strict=True):
    ax.contourf(axis, axis, landscape, levels=25, cmap="viridis")
    chains = trajectory[step // 10]
    ax.scatter(chains[:, 0], chains[:, 1], s=1, c="red", alpha=0.5)
    ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", title=f"after {step} steps")
figure.suptitle("Langevin chains on a bumpy ring, step size 0.005")

# %%
# Against the exact law
# ---------------------
# The histogram of the chains' final angles and the exact density
# :math:`e^{1.5 \cos 3\theta} / (2\pi I_0(1.5))`.
theta = torch.linspace(-math.pi, math.pi, 400)
density = torch.exp(BUMPS * torch.cos(3 * theta)) / (2 * math.pi * torch.special.i0(torch.tensor(BUMPS)))

figure, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
ax.hist(angle, bins=60, range=(-math.pi, math.pi), density=True, alpha=0.6, label="Langevin chains, 600 steps")
ax.plot(theta, density, c="black", label=r"exact, $\propto e^{1.5 \cos 3\theta}$")
ax.set(xlabel=r"angle $\theta$", ylabel="density", xlim=(-math.pi, math.pi), ylim=(0, 0.6))
ax.legend(loc="upper center", ncols=2)
plt.show()
