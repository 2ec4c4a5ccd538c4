"""Draw docs/_static/generated/diagnostics.png: what a healthy and two failing runs look like.

Three runs of the quickstart's set-up on the eight Gaussians, 600 steps each (about
15 s on one core): the quickstart's settings; the same without the energy
regularisation; and a sampler too weak to move its chains (one Langevin step of
size 1e-4 per training step). Also defines the callback of the "Diagnosing
training" tutorial, which stops a run whose energies run away.
"""

from __future__ import annotations

# [imports-start]
from collections.abc import Callable

import torch
from torch import Tensor

from ebmlib import EBM, Langevin, NetworkEnergy, ReplayBuffer, UniformInit, WeightedSum
from ebmlib.data import sample_toy
from ebmlib.losses import ContrastiveDivergence, EnergyRegularization
from ebmlib.models import MLP
from ebmlib.training import Trainer

# [imports-end]
# [runs-start]
RUNS = {
    "healthy (quickstart)": {"regularization": 0.1, "step_size": 0.01, "n_steps": 20},
    "no energy regularisation": {"regularization": 0.0, "step_size": 0.01, "n_steps": 20},
    "sampler too weak": {"regularization": 0.1, "step_size": 1e-4, "n_steps": 1},
}


def run(
    regularization: float, step_size: float, n_steps: int, n_batches: int = 600, callbacks: tuple = ()
) -> tuple[list[dict], EBM]:
    """Train like the quickstart with the given settings; the Trainer's history and the recipe."""
    torch.manual_seed(0)
    data = torch.Generator().manual_seed(0)
    batches = [sample_toy("eight_gaussians", 128, generator=data) for _ in range(n_batches)]
    model = NetworkEnergy(MLP(2, 1, hidden=64, depth=3))
    terms = {"cd": (1.0, ContrastiveDivergence()), "l2": (regularization, EnergyRegularization())}
    recipe = EBM(model, Langevin(step_size=step_size, n_steps=n_steps),
                 ReplayBuffer(8192, UniformInit((2,), low=-3.0, high=3.0)),
                 torch.optim.Adam(model.parameters(), lr=1e-2),
                 loss=WeightedSum({k: v for k, v in terms.items() if v[0] > 0}))
    trainer = Trainer(recipe, device="cpu", seed=0, progress=False, refresh_every=10, callbacks=callbacks)
    return trainer.fit(batches, epochs=1), recipe


# [runs-end]
# [callback-start]
def stop_on_runaway(limit: float = 1e3, every: int = 10) -> Callable[[Trainer, dict[str, Tensor]], None]:
    """A Trainer callback that raises once an energy gap is non-finite or larger than ``limit`` in size."""

    def callback(trainer: Trainer, metrics: dict[str, Tensor]) -> None:
        if trainer.step % every != 0:  # reading a tensor is a host sync: only every `every` steps
            return
        gaps = [value for name, value in metrics.items() if name.endswith("energy_gap")]
        worst = float(torch.stack(gaps).abs().max()) if gaps else 0.0
        if not worst <= limit:  # also true for NaN
            raise FloatingPointError(f"energy gap of size {worst:.3g} at step {trainer.step}: the run diverged")

    return callback


# [callback-end]


if __name__ == "__main__":
    from plotting import plt, save, show_points

    torch.set_num_threads(1)
    fig, axes = plt.subplots(2, len(RUNS), figsize=(4 * len(RUNS), 8), layout="constrained")
    for column, (title, settings) in enumerate(RUNS.items()):
        history, recipe = run(**settings)
        steps = [row["step"] for row in history]
        ax = axes[0, column]
        for name, label in [("cd/positive_energy", "mean E(data)"), ("cd/negative_energy", "mean E(negatives)"),
                            ("cd/energy_gap", "energy gap")]:
            ax.plot(steps, [row[name] for row in history], label=label)
        if max(abs(row["cd/energy_gap"]) for row in history) > 100:
            ax.set_yscale("symlog")
        ax.set_xlabel("training step")
        ax.set_title(title)
        ax.legend(fontsize=8)
        chains = recipe.buffer.samples[:2000]
        inside = float((chains.abs() <= 3).all(dim=1).float().mean())
        title = f"replay buffer at the end\n({inside:.0%} inside the frame)"
        show_points(axes[1, column], chains, title, color="tab:red")
    save(fig, "diagnostics.png")
