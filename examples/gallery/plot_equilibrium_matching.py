r"""
Equilibrium matching: one landscape, descended from noise
=========================================================

Equilibrium matching (Wang & Du, 2025) trains a time-free energy whose *gradient* points from
noise to data: for data :math:`x`, noise :math:`\epsilon \sim \mathcal{N}(0, I)` and
:math:`\gamma \sim U(0, 1)`, the gradient at :math:`x_\gamma = \gamma x + (1 - \gamma)\epsilon` is
regressed on :math:`(\epsilon - x)\, c(\gamma)`, with a magnitude
:math:`c(\gamma) = 4 \min(1, (1 - \gamma)/0.2)` that vanishes at the data
(:class:`~ebmlib.losses.EquilibriumMatching`, :class:`~ebmlib.recipes.EquilibriumMatchingEBM`).
Samples come by gradient descent from noise (:class:`~ebmlib.samplers.GradientDescent`), plain
or with Nesterov momentum, not by MCMC.

The target is a mixture of four Gaussians (std 0.2) on a circle of radius 2, with weights
0.4, 0.3, 0.2 and 0.1. The recipe's default descent is 5 steps of size 0.05: the loss's
``descent_steps`` and ``descent_step_size``, which would carry every noise point exactly onto the
data if the field knew how far along its line each point is. In two dimensions the field, an
average over all the lines through a point, is weaker than that: after 5 steps about three chains in
four have reached a mode (Nesterov's momentum: more), the modes get their right shares but are
tighter than the data, and the rest are still on their way; by 10 steps nearly all have arrived, and
descent continued further collapses each mode towards a point, which the grid KL punishes. EqM's
descent is not a sampler of the data's law here; its theory is for data on a low-dimensional
manifold, where the field vanishes.
"""

# %%
import matplotlib.pyplot as plt
import torch

from ebmlib.evaluation import plot_energy_landscape
from ebmlib.evaluation.grid_kl import grid_kl
from ebmlib.models import MLP, NetworkEnergy
from ebmlib.recipes import EquilibriumMatchingEBM
from ebmlib.samplers import ChainState, GradientDescent
from ebmlib.training import CosineDecay, Trainer

CENTERS = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
WEIGHTS = torch.tensor([0.4, 0.3, 0.2, 0.1])
BOUNDS = (-3.0, 3.0, -3.0, 3.0)


def sample_mixture(n, generator):
    component = torch.multinomial(WEIGHTS, n, replacement=True, generator=generator)
    return CENTERS[component] + 0.2 * torch.randn(n, 2, generator=generator)


# %%
# Training: 500 batches of 512 points, Adam at 1e-2 with a cosine decay. No sampler runs.
torch.manual_seed(0)
model = NetworkEnergy(MLP(2, 1, hidden=64, depth=2))
recipe = EquilibriumMatchingEBM(model, torch.optim.Adam(model.parameters(), lr=1e-2), (2,))
data_generator = torch.Generator().manual_seed(100)
loader = [sample_mixture(512, data_generator) for _ in range(500)]
trainer = Trainer(recipe, device="cpu", seed=0, progress=False, refresh_every=100, lr_schedule=CosineDecay())
trainer.fit(loader, epochs=1)
print(recipe.sampler)

# %%
# Samples, judged by the grid KL divergence of the data from them
# (:func:`~ebmlib.evaluation.grid_kl.grid_kl`, 32 x 32 cells on :math:`[-3, 3]^2`).
reference = sample_mixture(4000, torch.Generator().manual_seed(12345))
noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
nesterov = GradientDescent(step_size=0.05, momentum=0.3, nesterov=True)
samples = {
    "5 steps (default)": recipe.generate(2000, start=noise),
    "10 steps": recipe.generate(2000, start=noise, n_steps=10),
    "40 steps": recipe.generate(2000, start=noise, n_steps=40),
    "Nesterov, 5 steps": nesterov.sample(model, noise, n_steps=5),
}
samples["fresh data"] = sample_mixture(2000, torch.Generator().manual_seed(7))
scores = {}
for name, x in samples.items():
    scores[name] = grid_kl(x, reference, bins=32, limits=(-3, 3))
    distance, mode = torch.cdist(x, CENTERS).min(dim=1)
    share = torch.bincount(mode, minlength=4) / len(x)
    arrived = distance < 0.6
    print(f"{name:18s} grid KL {scores[name]:.3f}; share per mode {[round(v, 2) for v in share.tolist()]}; "
          f"within 0.6 of a mode {float(arrived.float().mean()):.2f}, "
          f"at an rms distance {float(distance[arrived].pow(2).mean().sqrt()):.2f}")

# %%
# Descent paths, plain and Nesterov (momentum 0.3), 20 steps of 0.05 from the same 24 noise points;
# each step costs one gradient evaluation. The mean gradient norm along the way shows the learned
# magnitude :math:`c(\gamma)` at work: large far from the data, small near it.


def descend(sampler, start, n_steps):
    state, path, norms = ChainState(start), [start], []
    for _ in range(n_steps):
        state, info = sampler.step(model, state)
        path.append(state.position)
        norms.append(float(info.grad_norm.mean()))
    return torch.stack(path), norms


starts = noise[:24]
paths = {"plain": descend(GradientDescent(step_size=0.05), starts, 20),
         "Nesterov": descend(nesterov, starts, 20)}

# %%
# Side by side
# ------------
figure, axes = plt.subplots(1, 4, figsize=(17, 4.2), layout="constrained")
plot_energy_landscape(axes[0], model, reference[:500], BOUNDS, title="learned energy and data")
plot_energy_landscape(axes[1], model, None, BOUNDS, title="descent paths (dots: step 5)")
for (name, (path, _)), colour in zip(paths.items(), ("white", "orange"), strict=True):
    for chain in range(path.shape[1]):
        axes[1].plot(path[:, chain, 0], path[:, chain, 1], color=colour, linewidth=0.8,
                     label=name if chain == 0 else None)
        axes[1].plot(path[5, chain, 0], path[5, chain, 1], "o", color=colour, markersize=3)
axes[1].legend(loc="lower left", fontsize=8)
plot_energy_landscape(axes[2], model, samples["5 steps (default)"], BOUNDS,
                      title=f"5 steps: KL {scores['5 steps (default)']:.2f}; 40 steps: {scores['40 steps']:.2f}")
for name, (_, norms) in paths.items():
    axes[3].plot(range(1, 21), norms, label=name)
axes[3].axvline(5, color="grey", linestyle=":")
axes[3].set_xlabel("step")
axes[3].set_ylabel(r"mean $\Vert\nabla E\Vert$ at the step's start")
axes[3].set_title("the learned gradient magnitude")
axes[3].legend()
plt.show()
