"""The generic EBM recipe: persistent contrastive divergence from interchangeable parts."""

from __future__ import annotations

import torch
from torch import Tensor

from ..buffers import Initializer, ReplayBuffer
from ..losses import Loss
from ..models import EnergyModel
from ..samplers import Sampler
from .contrastive import ContrastiveRecipe


class EBM(ContrastiveRecipe):
    r"""Train an energy model with negatives from persistent chains (PCD).

    A :class:`~ebmlib.recipes.ContrastiveRecipe` whose negatives continue
    chains kept in a replay buffer: each step draws ``B`` stored chains (some
    restarted from the buffer's initializer), runs ``sampler`` on them and
    stores them back. Class-conditional chains come from the buffer's per-class
    slots. Every part can be replaced by any implementation of its interface.

    Parameters
    ----------
    model : EnergyModel
    sampler : Sampler
    buffer : ReplayBuffer
        Give it ``n_classes`` for a loss with a class-conditional term.
    optimizer : torch.optim.Optimizer
        Over ``model``'s parameters.
    loss : Loss, optional
        Default :class:`~ebmlib.losses.ContrastiveDivergence`.
    input_noise_std : float
        Standard deviation of the noise added to data (0 = none).
    n_negatives : int, optional
        Chains per step (default one per data row); see
        :class:`~ebmlib.recipes.ContrastiveRecipe`.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.buffers import ReplayBuffer, UniformInit
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> from ebmlib.samplers import Langevin
    >>> model = NetworkEnergy(MLP(2, 1, hidden=16))
    >>> recipe = EBM(model, Langevin(step_size=0.01, n_steps=5),
    ...              ReplayBuffer(64, UniformInit((2,), -3, 3)),
    ...              torch.optim.Adam(model.parameters(), lr=1e-3))
    >>> metrics = recipe.training_step(torch.randn(16, 2), generator=torch.Generator().manual_seed(0))
    >>> sorted(metrics)
    ['energy_gap', 'loss', 'negative_energy', 'positive_energy']
    >>> recipe.generate(3, start=torch.zeros(3, 2), n_steps=10).shape  # chains from given points
    torch.Size([3, 2])
    """

    def __init__(
        self,
        model: EnergyModel,
        sampler: Sampler,
        buffer: ReplayBuffer,
        optimizer: torch.optim.Optimizer,
        loss: Loss | None = None,
        input_noise_std: float = 0.0,
        n_negatives: int | None = None,
    ) -> None:
        super().__init__(model, sampler, optimizer, loss, input_noise_std, n_negatives)
        self.buffer = buffer
        self.check_conditional_chains(buffer.n_classes, "give the buffer n_classes (ReplayBuffer(capacity, "
                                      "initializer, n_classes=K), a block of chains per class)")

    @property
    def initializer(self) -> Initializer:  # type: ignore[override]
        """The buffer's initializer."""
        return self.buffer.initializer

    @property
    def n_classes(self) -> int | None:  # type: ignore[override]
        """Number of classes of conditional chains (the buffer's)."""
        return self.buffer.n_classes

    def restart_chains(self, generator: torch.Generator | None = None) -> None:
        """Replace every chain of the replay buffer by a fresh start from its initializer."""
        self.buffer.reinitialize(generator)

    def negatives(self, batch_size: int, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Continue ``batch_size`` persistent chains (of classes ``y``) and store them back."""
        x0, index = self.buffer.sample(batch_size, y, generator)
        x = self.sampler.sample(self.model, x0, y=y, generator=generator)
        self.buffer.update(index, x)
        return x
