"""What every recipe that trains an energy model against sampled negatives shares."""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from .._checks import (
    check_batch,
    check_count,
    check_generator,
    check_labels,
    check_positive,
    check_same_dtype,
    warn_if_unscaled,
)
from ..buffers import Initializer
from ..losses import Classification, ConditionalEnergies, ContrastiveDivergence, Energies, EnergyBatch, Loss, LossInput
from ..models import EnergyModel
from ..samplers import Sampler
from .base import LossRecipe


class ContrastiveRecipe(LossRecipe):
    r"""Train an energy model with negatives :math:`x^-` drawn by a sampler; subclasses say where chains start.

    One :meth:`training_step` on data :math:`x^+`:

    1. add ``input_noise_std`` Gaussian noise to :math:`x^+` (optional);
    2. draw the negatives of every kind the loss :meth:`~ebmlib.losses.Loss.needs`
       (:meth:`negatives`; class-conditional chains for labels
       :math:`y^- \sim \mathcal{U}\{0..K-1\}` too, for
       :class:`~ebmlib.losses.ConditionalEnergies`);
    3. evaluate the model once per conditioning on :math:`[x^+; x^-]` into an
       :class:`~ebmlib.losses.EnergyBatch` holding only what the loss needs
       (:meth:`loss_inputs`);
    4. take one ``optimizer`` step on the loss

    (the :class:`~ebmlib.recipes.base.LossRecipe` skeleton, with the noise added by
    :meth:`prepare_data`).

    A subclass implements :meth:`negatives`, ``initializer`` and ``n_classes``.
    A loss that needs a new kind of input is served by overriding
    :meth:`loss_inputs` alone (compute the new kind, leave the rest to ``super()``).

    Parameters
    ----------
    model : EnergyModel
        A plain network is refused: wrap it in :class:`~ebmlib.models.NetworkEnergy`.
    sampler : Sampler
    optimizer : torch.optim.Optimizer
        Over ``model``'s parameters (every trainable one; checked).
    loss : Loss, optional
        Default :class:`~ebmlib.losses.ContrastiveDivergence`.
    input_noise_std : float
        Standard deviation of the noise added to data (0 = none).
    n_negatives : int, optional
        Chains per step, for each kind of negatives the loss needs (default: one
        per row of the data batch). The chains are most of a step's cost, so a data
        batch larger than ``n_negatives`` gives the data-side terms (cross-entropy,
        :math:`E(x^+)`) more images for little extra time.

    Raises
    ------
    TypeError
        If ``model`` is not an :class:`~ebmlib.models.EnergyModel` or ``optimizer`` not an optimizer.
    ValueError
        If ``optimizer`` leaves out trainable parameters of ``model``.

    Examples
    --------
    Chains that start at zero every step:

    >>> import torch
    >>> from ebmlib.buffers import GaussianInit
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> from ebmlib.samplers import Langevin
    >>> class FromZero(ContrastiveRecipe):
    ...     initializer = GaussianInit((2,), std=1e-6)
    ...     n_classes = None
    ...     def negatives(self, batch_size, y=None, generator=None):
    ...         start = torch.zeros(batch_size, 2)
    ...         return self.sampler.sample(self.model, start, y=y, generator=generator)
    >>> model = NetworkEnergy(MLP(2, 1, hidden=8))
    >>> recipe = FromZero(model, Langevin(step_size=0.01, n_steps=3), torch.optim.SGD(model.parameters(), lr=0.1))
    >>> sorted(recipe.training_step(torch.randn(4, 2)))
    ['energy_gap', 'loss', 'negative_energy', 'positive_energy']
    """

    initializer: Initializer
    """Where fresh chains start (:meth:`generate`'s default start); fixes the event shape."""

    n_classes: int | None
    """Number of classes of conditional chains, or ``None``."""

    def __init__(
        self,
        model: EnergyModel,
        sampler: Sampler,
        optimizer: torch.optim.Optimizer,
        loss: Loss | None = None,
        input_noise_std: float = 0.0,
        n_negatives: int | None = None,
    ) -> None:
        super().__init__(model, optimizer, ContrastiveDivergence() if loss is None else loss)
        check_positive(input_noise_std, "input_noise_std", allow_zero=True)
        self.n_negatives = None if n_negatives is None else check_count(n_negatives, "n_negatives")
        self.sampler = sampler
        self.input_noise_std = input_noise_std
        self._scale_checked = False

    @abstractmethod
    def negatives(self, batch_size: int, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """``batch_size`` model samples :math:`x^-` (of classes ``y``), shape ``(batch_size, *event_shape)``."""

    def check_conditional_chains(self, n_classes: int | None, fix: str) -> None:
        """Raise a ``ValueError`` if the loss has a class-conditional term and the chains are not kept per class.

        A subclass calls it at the end of ``__init__`` with the number of classes its
        chains are kept for (``None``: one pool) and how to give it. The loss's weights
        are taken as given (a :class:`~ebmlib.training.TermWarmUp` lowers them only
        when training starts).
        """
        if n_classes is None and ConditionalEnergies in self.loss.needs():
            raise ValueError(
                f"loss {type(self.loss).__name__} has a class-conditional term (it needs ConditionalEnergies, e.g. "
                "jem_loss(p_x_given_y_weight=1) or ContrastiveDivergence(conditional=True)), whose negatives are "
                f"chains of each class, but {type(self).__name__} keeps no class-conditional chains: {fix}, or give "
                "that term weight 0"
            )

    # ------------------------------------------------------------------ the Recipe protocol
    def check_inputs(self, x: Tensor, y: Tensor | None = None) -> None:
        """Raise a clear error for data the recipe cannot train on; warn once if it looks unscaled.

        The data must be a finite floating batch of the initializer's event shape, of
        the model's parameters' dtype, with labels in range. The warning compares the
        data's range with where the chains start (draws of ``initializer``): images
        left in 0..255 against chains in [-1, 1] would train without a word otherwise.
        Value checks run on CPU tensors only (no device synchronisation).
        """
        check_batch(x, "x", self.initializer.event_shape)
        check_same_dtype(x, self.model)
        if y is not None:
            check_labels(y, x.shape[0], self.n_classes)
        if not self._scale_checked and x.device.type == "cpu":
            self._scale_checked = True
            reference = self.initializer(256, None, torch.Generator(x.device).manual_seed(0))
            warn_if_unscaled(x, reference, "x", type(self.initializer).__name__)

    def prepare_data(
        self, needs: frozenset[type[LossInput]], x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> Tensor:
        """``x`` plus ``input_noise_std`` Gaussian noise; a ``ValueError`` if ``needs`` reads labels and ``y`` is
        ``None``."""
        if y is None and needs & {ConditionalEnergies, Classification}:
            raise ValueError(f"{type(self.loss).__name__} needs labels: pass y to training_step")
        if self.input_noise_std > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + self.input_noise_std * noise
        return x

    # ------------------------------------------------------------------ what the loss reads
    def loss_inputs(
        self, needs: frozenset[type[LossInput]], x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> EnergyBatch:
        """Compute every kind of input in ``needs``: :class:`~ebmlib.losses.Energies` and
        :class:`~ebmlib.losses.ConditionalEnergies`, one forward pass per conditioning.

        Raises
        ------
        ValueError
            For a kind this recipe cannot compute (the message names it).
        """
        self.check_computable(self.loss, needs, {Energies, ConditionalEnergies})
        inputs: list[LossInput] = []
        if Energies in needs:
            negatives = self.negatives(self.negatives_per_step(x), None, generator)
            positive, negative = self.model(torch.cat([x, negatives])).split([len(x), len(negatives)])
            inputs.append(Energies(positive, negative))
        if ConditionalEnergies in needs:
            assert y is not None  # checked by prepare_data
            labels, negatives = self.conditional_negatives(x, generator)
            energy = self.model(torch.cat([x, negatives]), torch.cat([y, labels]))
            inputs.append(ConditionalEnergies(*energy.split([len(x), len(negatives)])))
        return EnergyBatch(*inputs)

    def negatives_per_step(self, x: Tensor) -> int:
        """Chains per step for the data batch ``x``: ``n_negatives``, or one per row of ``x``."""
        return x.shape[0] if self.n_negatives is None else self.n_negatives

    def conditional_negatives(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        r"""Labels :math:`y^- \sim \mathcal{U}\{0..K-1\}` (:meth:`negatives_per_step` of them, on the data
        ``x``'s device) and chains of those classes."""
        labels = self.uniform_classes(self.negatives_per_step(x), x.device, generator)
        return labels, self.negatives(len(labels), labels, generator)

    def uniform_classes(self, n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        r"""``n`` labels :math:`y \sim \mathcal{U}\{0..K-1\}` on ``device``, shape ``(n,)``."""
        if self.n_classes is None:
            raise ValueError(f"conditional loss terms need class-conditional chains: give {type(self).__name__} "
                             "n_classes (a buffer with n_classes)")
        return torch.randint(self.n_classes, (n,), generator=generator, device=device)

    # ------------------------------------------------------------------ sampling
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
            from, the starting points themselves, or ``None`` for ``initializer``.
        n_steps : int, optional
            Sampler steps (default: the sampler's ``n_steps``).
        generator : torch.Generator, optional

        Returns
        -------
        Tensor, shape ``(n, *event_shape)``
        """
        check_generator(generator)
        if n < 1:
            raise ValueError(f"n must be a positive number of samples, got {n}")
        if y is not None and tuple(y.shape) != (n,):
            raise ValueError(f"y must have shape ({n},), got {tuple(y.shape)}")
        if isinstance(start, Tensor):
            expected = (n, *self.initializer.event_shape)
            if tuple(start.shape) != expected:
                raise ValueError(f"start must have shape {expected}, got {tuple(start.shape)}")
            x0 = start
        elif start is None or isinstance(start, Initializer):
            x0 = (self.initializer if start is None else start)(n, y, generator)
        else:
            raise TypeError(f"start must be an Initializer, a Tensor or None, got {type(start).__name__}")
        return self.sampler.sample(self.model, x0, n_steps=n_steps, y=y, generator=generator)

