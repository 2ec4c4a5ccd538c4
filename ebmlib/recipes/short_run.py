"""Short-run EBM: every step's negatives come from new chains, no replay buffer (Nijkamp et al., 2019)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..buffers import Initializer
from ..losses import Loss
from ..models import EnergyModel
from ..samplers import Sampler
from .contrastive import ContrastiveRecipe


class ShortRunEBM(ContrastiveRecipe):
    r"""Train an energy model with negatives from short chains started afresh every step.

    Each step's negatives are ``sampler.n_steps`` steps of the sampler from
    :math:`x_0 \sim` ``initializer``: non-persistent, short-run MCMC (Nijkamp,
    Hill, Zhu & Wu, 2019, *Learning non-convergent non-persistent short-run MCMC
    toward energy-based model*). The model learns to make exactly that short
    run produce data, so :meth:`generate` with the same number of steps samples
    it. Nothing is kept between steps: no buffer, no chains to restart.

    Parameters
    ----------
    model : EnergyModel
    sampler : Sampler
    initializer : Initializer
        Where every chain starts (Nijkamp et al.: uniform noise).
    optimizer : torch.optim.Optimizer
        Over ``model``'s parameters.
    loss : Loss, optional
        Default :class:`~ebmlib.losses.ContrastiveDivergence`.
    input_noise_std : float
        Standard deviation of the noise added to data (0 = none).
    n_classes : int, optional
        Number of classes, for class-conditional chains (losses that need
        :class:`~ebmlib.losses.ConditionalEnergies`).
    n_negatives : int, optional
        Chains per step (default one per data row); see
        :class:`~ebmlib.recipes.ContrastiveRecipe`.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.buffers import UniformInit
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> from ebmlib.samplers import Langevin
    >>> model = NetworkEnergy(MLP(2, 1, hidden=16))
    >>> recipe = ShortRunEBM(model, Langevin(step_size=0.01, n_steps=5), UniformInit((2,), -3, 3),
    ...                      torch.optim.Adam(model.parameters(), lr=1e-3))
    >>> metrics = recipe.training_step(torch.randn(16, 2), generator=torch.Generator().manual_seed(0))
    >>> sorted(metrics), len(recipe.state_dict()) == len(model.state_dict()) + 1  # + the initializer's
    (['energy_gap', 'loss', 'negative_energy', 'positive_energy'], True)
    """

    def __init__(
        self,
        model: EnergyModel,
        sampler: Sampler,
        initializer: Initializer,
        optimizer: torch.optim.Optimizer,
        loss: Loss | None = None,
        input_noise_std: float = 0.0,
        n_classes: int | None = None,
        n_negatives: int | None = None,
    ) -> None:
        super().__init__(model, sampler, optimizer, loss, input_noise_std, n_negatives)
        if n_classes is not None and n_classes < 1:
            raise ValueError(f"n_classes must be a positive number of classes or None, got {n_classes}")
        self.initializer = initializer
        self.n_classes = n_classes
        self.check_conditional_chains(n_classes, "give ShortRunEBM n_classes=K")

    def negatives(self, batch_size: int, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Run ``batch_size`` new chains from ``initializer`` (of classes ``y``)."""
        x0 = self.initializer(batch_size, y, generator)
        return self.sampler.sample(self.model, x0, y=y, generator=generator)
