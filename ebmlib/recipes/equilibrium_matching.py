"""Equilibrium matching of an energy model: no chains while training, gradient descent from noise to generate."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import check_batch, check_count, check_generator, check_same_dtype
from ..losses import EnergyBatch, LossInput
from ..losses.equilibrium_matching import EquilibriumMatching, InterpolatedGradients
from ..models import EnergyModel
from ..samplers import GradientDescent, Sampler
from .base import LossRecipe


class EquilibriumMatchingEBM(LossRecipe):
    r"""Train an energy model by equilibrium matching (Wang & Du, 2025); generate by descending it from noise.

    One :meth:`training_step` on data :math:`x` draws :math:`\epsilon \sim \mathcal{N}(0, I)` and
    :math:`\gamma \sim U(0, 1)` per sample, forms :math:`x_\gamma = \gamma x + (1 - \gamma)\epsilon`, computes
    :math:`\nabla_x E_\theta(x_\gamma)` with its graph kept
    (:class:`~ebmlib.losses.InterpolatedGradients`) and takes one ``optimizer`` step on
    :class:`~ebmlib.losses.EquilibriumMatching`. No sampler runs during training,
    and there are no chains to keep.

    :meth:`generate` starts from :math:`\mathcal{N}(0, I)` noise and runs ``sampler``,
    by default :class:`~ebmlib.samplers.GradientDescent` with the loss's
    :attr:`~ebmlib.losses.EquilibriumMatching.descent_step_size` :math:`(1 - a)/\lambda`
    for :attr:`~ebmlib.losses.EquilibriumMatching.descent_steps` :math:`1/(1 - a)`
    steps, which would carry every noise point exactly onto the data if the field
    knew how far along its line each point is (the loss's *Step size*). Any
    :class:`~ebmlib.samplers.Sampler` may be given instead: more, smaller steps,
    Nesterov momentum (``GradientDescent(..., momentum=0.3, nesterov=True)``),
    or Langevin dynamics, though the learned energy is not :math:`-\log p` of the data.

    Parameters
    ----------
    model : EnergyModel
    optimizer : torch.optim.Optimizer
        Over ``model``'s parameters.
    event_shape : tuple of int
        Shape of one data point (``(2,)`` for 2D points).
    loss : EquilibriumMatching, optional
        Default ``EquilibriumMatching()`` (:math:`\lambda = 4`, :math:`a = 0.8`).
    sampler : Sampler, optional
        What :meth:`generate` runs; default
        ``GradientDescent(loss.descent_step_size, n_steps=loss.descent_steps)``.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> model = NetworkEnergy(MLP(2, 1, hidden=16))
    >>> recipe = EquilibriumMatchingEBM(model, torch.optim.Adam(model.parameters(), lr=1e-3), (2,))
    >>> g = torch.Generator().manual_seed(0)
    >>> sorted(recipe.training_step(torch.randn(32, 2), generator=g))
    ['gradient_norm', 'loss', 'target_norm']
    >>> type(recipe.sampler).__name__, recipe.sampler.step_size, recipe.sampler.n_steps
    ('GradientDescent', 0.05, 5)
    >>> recipe.generate(8, generator=g).shape
    torch.Size([8, 2])
    """

    loss: EquilibriumMatching

    def __init__(
        self,
        model: EnergyModel,
        optimizer: torch.optim.Optimizer,
        event_shape: Sequence[int],
        loss: EquilibriumMatching | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        loss = EquilibriumMatching() if loss is None else loss
        if not isinstance(loss, EquilibriumMatching):
            raise TypeError(f"loss must be an EquilibriumMatching loss, got {type(loss).__name__}")
        if sampler is not None and not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be an ebmlib Sampler (e.g. GradientDescent), got {type(sampler).__name__}")
        super().__init__(model, optimizer, loss)
        self.event_shape = tuple(check_count(n, "event_shape") for n in event_shape)
        self.sampler = GradientDescent(loss.descent_step_size, n_steps=loss.descent_steps) if sampler is None \
            else sampler

    # ------------------------------------------------------------------ the Recipe protocol
    def check_inputs(self, x: Tensor, y: Tensor | None = None) -> None:
        """Raise unless ``x`` is a finite floating batch ``(B, *event_shape)`` of the model's dtype."""
        check_batch(x, "x", self.event_shape)
        check_same_dtype(x, self.model)

    # ------------------------------------------------------------------ what the loss reads
    def loss_inputs(
        self, needs: frozenset[type[LossInput]], x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> EnergyBatch:
        r"""Compute :class:`~ebmlib.losses.InterpolatedGradients` (labels are not used); a ``ValueError``
        names any other kind asked for."""
        self.check_computable(self.loss, needs, {InterpolatedGradients})
        return EnergyBatch(self.interpolated_gradients(x, generator))

    def interpolated_gradients(self, x: Tensor, generator: torch.Generator | None) -> InterpolatedGradients:
        r""":math:`\epsilon`, :math:`\gamma`, :math:`\nabla_x E_\theta(\gamma x + (1-\gamma)\epsilon)` (graph kept)."""
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        gamma = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        weight = gamma.reshape(-1, *([1] * (x.dim() - 1)))
        point = (weight * x + (1 - weight) * noise).requires_grad_(True)
        (gradient,) = torch.autograd.grad(self.model(point).sum(), point, create_graph=True)
        return InterpolatedGradients(data=x, noise=noise, interpolation=gamma, gradient=gradient)

    # ------------------------------------------------------------------ samples
    def generate(
        self,
        n: int,
        start: Tensor | None = None,
        n_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""``n`` samples: ``sampler`` run from :math:`\mathcal{N}(0, I)` noise (or from ``start``).

        Parameters
        ----------
        n : int
            Number of samples.
        start : Tensor of shape ``(n, *event_shape)``, optional
            Where the descent starts; default fresh standard Gaussian noise, drawn from
            ``generator`` in the model's dtype and on its device.
        n_steps : int, optional
            Sampler steps (default: the sampler's ``n_steps``).
        generator : torch.Generator, optional

        Returns
        -------
        Tensor, shape ``(n, *event_shape)``
        """
        check_generator(generator)
        n = check_count(n, "n")
        if start is None:
            reference = next(iter(self.model.parameters()), None)
            dtype = reference.dtype if reference is not None else torch.get_default_dtype()
            device = reference.device if reference is not None else None
            start = torch.randn((n, *self.event_shape), generator=generator, dtype=dtype, device=device)
        elif not isinstance(start, Tensor) or tuple(start.shape) != (n, *self.event_shape):
            shape = tuple(start.shape) if isinstance(start, Tensor) else type(start).__name__
            raise ValueError(f"start must be a tensor of shape {(n, *self.event_shape)}, got {shape}")
        return self.sampler.sample(self.model, start, n_steps, generator=generator)

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}"
