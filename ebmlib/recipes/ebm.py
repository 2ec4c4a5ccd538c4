"""The generic EBM recipe: persistent contrastive divergence from interchangeable parts."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._checks import check_batch, check_labels, check_positive
from ..buffers import Initializer, ReplayBuffer
from ..losses import ContrastiveDivergence, EnergyBatch, Loss
from ..models import EnergyModel
from ..samplers import Sampler
from .base import Recipe


class EBM(Recipe):
    r"""Train an energy model with negatives from persistent chains.

    One :meth:`training_step` on data :math:`x^+`:

    1. add ``input_noise_std`` Gaussian noise to :math:`x^+` (optional);
    2. draw chains from ``buffer``, run ``sampler`` on them, store them back:
       these are the negatives :math:`x^-` (class-conditional chains for labels
       :math:`y^- \sim \mathcal{U}\{0..K-1\}` too, when the loss reads
       conditional energies);
    3. evaluate the model once on :math:`[x^+; x^-]` into an
       :class:`~ebmlib.losses.EnergyBatch` holding only what ``loss.needs()``;
    4. take one ``optimizer`` step on the loss.

    Every part can be replaced by any implementation of its interface.

    Parameters
    ----------
    model : EnergyModel
    sampler : Sampler
    buffer : ReplayBuffer
    optimizer : torch.optim.Optimizer
        Over ``model``'s parameters.
    loss : Loss, optional
        Default :class:`~ebmlib.losses.ContrastiveDivergence`.
    input_noise_std : float
        Standard deviation of the noise added to data (0 = none).

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
    ) -> None:
        super().__init__()
        check_positive(input_noise_std, "input_noise_std", allow_zero=True)
        self.model = model
        self.sampler = sampler
        self.buffer = buffer
        self.loss = ContrastiveDivergence() if loss is None else loss
        self.optimizer = optimizer
        self.input_noise_std = input_noise_std

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """``[optimizer]``."""
        return [self.optimizer]

    def data_parallel_modules(self) -> list[nn.Module]:
        """``[model]``: the replay buffer's chains stay each process's own."""
        return [self.model]

    def restart_chains(self, generator: torch.Generator | None = None) -> None:
        """Replace every chain of the replay buffer by a fresh start from its initializer."""
        self.buffer.reinitialize(generator)

    @property
    def n_classes(self) -> int | None:
        """Number of classes of conditional chains (the buffer's)."""
        return self.buffer.n_classes

    def check_inputs(self, x: Tensor, y: Tensor | None) -> None:
        """Raise a clear error for data the recipe cannot train on."""
        check_batch(x, "x", self.buffer.event_shape)
        if y is not None:
            check_labels(y, x.shape[0], self.n_classes)

    def negatives(
        self, batch_size: int, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Continue ``batch_size`` persistent chains (of classes ``y``) and store them back."""
        x0, index = self.buffer.sample(batch_size, y, generator)
        x = self.sampler.sample(self.model, x0, y=y, generator=generator)
        self.buffer.update(index, x)
        return x

    def energy_batch(
        self,
        x: Tensor,
        y: Tensor | None,
        negatives: Tensor | None,
        conditional_negatives: Tensor | None,
        negative_labels: Tensor | None,
    ) -> EnergyBatch:
        """One forward pass per conditioning over data and negatives."""
        batch = EnergyBatch(labels=y)
        if negatives is not None:
            energy = self.model(torch.cat([x, negatives]))
            batch.positive_energy, batch.negative_energy = energy.split([len(x), len(negatives)])
        if conditional_negatives is not None and y is not None and negative_labels is not None:
            energy = self.model(torch.cat([x, conditional_negatives]), torch.cat([y, negative_labels]))
            split = energy.split([len(x), len(conditional_negatives)])
            batch.conditional_positive_energy, batch.conditional_negative_energy = split
        return batch

    def training_step(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """One optimisation step on a batch of data.

        Parameters
        ----------
        x : Tensor, shape ``(B, *event_shape)``
        y : Tensor of int64, shape ``(B,)``, optional
            Labels (needed by classification and conditional terms).
        generator : torch.Generator, optional
            For the noise, the buffer and the sampler; on ``x``'s device.

        Returns
        -------
        dict of str to Tensor
            ``loss`` and the loss's metrics, as detached scalar tensors.
        """
        self.check_inputs(x, y)
        needs = self.loss.needs()
        if "labels" in needs and y is None:
            raise ValueError(f"{type(self.loss).__name__} needs labels: pass y to training_step")
        if self.input_noise_std > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + self.input_noise_std * noise
        negatives = conditional = negative_labels = None
        if needs & {"negative_energy", "positive_energy"}:
            negatives = self.negatives(x.shape[0], None, generator)
        if needs & {"conditional_negative_energy", "conditional_positive_energy"}:
            if y is None or self.n_classes is None:
                raise ValueError("conditional loss terms need labels y and a buffer with n_classes")
            negative_labels = torch.randint(self.n_classes, y.shape, generator=generator, device=y.device)
            conditional = self.negatives(x.shape[0], negative_labels, generator)
        batch = self.energy_batch(x, y, negatives, conditional, negative_labels)
        loss, metrics = self.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach(), **metrics}

    @torch.no_grad()
    def generate(
        self,
        n: int,
        y: Tensor | None = None,
        start: Initializer | Tensor | None = None,
        n_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``n`` samples from new chains run by the recipe's sampler, of classes ``y`` if given.

        Parameters
        ----------
        n : int
            Number of samples.
        y : Tensor of int64, shape ``(n,)``, optional
            Classes, for class-conditional chains :math:`E(x, y)`.
        start : Initializer or Tensor of shape ``(n, *event_shape)``, optional
            Where the chains start: an :class:`~ebmlib.buffers.Initializer` to draw
            from, the starting points themselves, or ``None`` for the buffer's
            initializer.
        n_steps : int, optional
            Sampler steps (default: the sampler's ``n_steps``).
        generator : torch.Generator, optional

        Returns
        -------
        Tensor, shape ``(n, *event_shape)``
        """
        return self.sampler.sample(self.model, chain_starts(n, y, start, self.buffer.initializer, generator),
                                   n_steps=n_steps, y=y, generator=generator)


def chain_starts(
    n: int, y: Tensor | None, start: Initializer | Tensor | None, default: Initializer,
    generator: torch.Generator | None,
) -> Tensor:
    """The ``(n, *event_shape)`` starting points of :meth:`EBM.generate`'s chains."""
    if n < 1:
        raise ValueError(f"n must be a positive number of samples, got {n}")
    if y is not None and tuple(y.shape) != (n,):
        raise ValueError(f"y must have shape ({n},), got {tuple(y.shape)}")
    if isinstance(start, Tensor):
        expected = (n, *default.event_shape)
        if tuple(start.shape) != expected:
            raise ValueError(f"start must have shape {expected}, got {tuple(start.shape)}")
        return start
    initializer = default if start is None else start
    if not isinstance(initializer, Initializer):
        raise TypeError(f"start must be an Initializer, a Tensor or None, got {type(start).__name__}")
    return initializer(n, y, generator)
