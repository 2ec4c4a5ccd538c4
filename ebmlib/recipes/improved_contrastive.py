"""Improved contrastive divergence (Du, Li, Tenenbaum & Mordatch, 2021): persistent chains plus the KL term."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.func import functional_call

from .._checks import check_count, check_positive
from ..buffers import ReplayBuffer
from ..losses import ConditionalEnergies, ContrastiveDivergence, Energies, EnergyBatch, Loss, LossInput, WeightedSum
from ..losses.sampler_kl import SamplerEnergies, SamplerKL
from ..models import EnergyModel
from ..samplers import Sampler
from .ebm import EBM


class ImprovedContrastiveEBM(EBM):
    r"""An :class:`~ebmlib.recipes.EBM` (replay buffer, persistent chains) that also computes the KL term's input.

    For a loss that needs :class:`~ebmlib.losses.SamplerEnergies` (default:
    :math:`\mathcal{L}_{\mathrm{CD}} + \mathcal{L}_{\mathrm{KL}}`, a
    :class:`~ebmlib.losses.WeightedSum` of :class:`~ebmlib.losses.ContrastiveDivergence`
    and :class:`~ebmlib.losses.SamplerKL`), each step takes the negatives
    :math:`x^-` of the persistent chains (also used by the contrastive term) and
    continues them by ``kl_steps`` Langevin steps *with* the graph kept,

    .. math::

        x_{k+1} = x_k - \eta \nabla_x E_\theta(x_k) + \sigma \xi_k, \qquad x_0 = x^-,

    (:math:`\eta` = ``kl_step_size``, :math:`\sigma` = ``kl_noise_std``), then
    evaluates :math:`E_{\bar\theta}(x_K)` with the parameters detached
    (``torch.func.functional_call``), so the KL term's gradient flows only through
    the sampler's steps (Du et al., 2021). The chains in the buffer are not
    changed by these extra steps.

    Parameters
    ----------
    model, sampler, buffer, optimizer, input_noise_std
        As for :class:`~ebmlib.recipes.EBM`.
    loss : Loss, optional
        Default ``WeightedSum({"cd": (1, ContrastiveDivergence()), "kl": (1, SamplerKL())})``.
    kl_step_size : float
        :math:`\eta > 0`.
    kl_noise_std : float, optional
        :math:`\sigma \ge 0`; default :math:`\sqrt{2\eta}`.
    kl_steps : int
        Differentiated steps (Du et al.: 1).

    Examples
    --------
    >>> import torch
    >>> from ebmlib.buffers import ReplayBuffer, UniformInit
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> from ebmlib.samplers import Langevin
    >>> model = NetworkEnergy(MLP(2, 1, hidden=16))
    >>> recipe = ImprovedContrastiveEBM(model, Langevin(step_size=0.01, n_steps=5),
    ...                                 ReplayBuffer(64, UniformInit((2,), -3, 3)),
    ...                                 torch.optim.Adam(model.parameters(), lr=1e-3), kl_step_size=0.01)
    >>> metrics = recipe.training_step(torch.randn(16, 2), generator=torch.Generator().manual_seed(0))
    >>> sorted(metrics)  # doctest: +NORMALIZE_WHITESPACE
    ['cd/energy_gap', 'cd/negative_energy', 'cd/positive_energy', 'kl/sampler_energy', 'loss', 'loss/cd',
     'loss/kl']
    """

    def __init__(
        self,
        model: EnergyModel,
        sampler: Sampler,
        buffer: ReplayBuffer,
        optimizer: torch.optim.Optimizer,
        loss: Loss | None = None,
        input_noise_std: float = 0.0,
        kl_step_size: float = 0.01,
        kl_noise_std: float | None = None,
        kl_steps: int = 1,
    ) -> None:
        if loss is None:
            loss = WeightedSum({"cd": (1.0, ContrastiveDivergence()), "kl": (1.0, SamplerKL())})
        super().__init__(model, sampler, buffer, optimizer, loss, input_noise_std)
        self.kl_step_size = check_positive(kl_step_size, "kl_step_size")
        default_noise = math.sqrt(2 * self.kl_step_size)
        self.kl_noise_std = default_noise if kl_noise_std is None else check_positive(kl_noise_std, "kl_noise_std",
                                                                                       allow_zero=True)
        self.kl_steps = check_count(kl_steps, "kl_steps")

    def loss_inputs(
        self, needs: frozenset[type[LossInput]], x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> EnergyBatch:
        """The :class:`~ebmlib.recipes.ContrastiveRecipe` inputs, and :class:`~ebmlib.losses.SamplerEnergies`
        from the same negatives."""
        if SamplerEnergies not in needs:
            return super().loss_inputs(needs, x, y, generator)
        self.check_computable(self.loss, needs, {Energies, ConditionalEnergies, SamplerEnergies})
        rest = super().loss_inputs(needs - {Energies, SamplerEnergies}, x, y, generator)
        inputs = [rest[kind] for kind in rest.kinds()]
        negatives = self.negatives(self.negatives_per_step(x), None, generator)
        if Energies in needs:
            inputs.append(Energies(*self.model(torch.cat([x, negatives])).split([len(x), len(negatives)])))
        inputs.append(SamplerEnergies(self.frozen_energy(self.differentiable_steps(negatives, generator))))
        return EnergyBatch(*inputs)

    def differentiable_steps(self, start: Tensor, generator: torch.Generator | None) -> Tensor:
        """``kl_steps`` Langevin steps from ``start`` with the graph kept (the samples depend on the parameters)."""
        x = start.detach().requires_grad_(True)
        for _ in range(self.kl_steps):
            (grad,) = torch.autograd.grad(self.model(x).sum(), x, create_graph=True)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x - self.kl_step_size * grad + self.kl_noise_std * noise
        return x

    def frozen_energy(self, x: Tensor) -> Tensor:
        r""":math:`E_{\bar\theta}(x)`: the model's energy with its parameters and buffers detached."""
        frozen = {name: t.detach() for name, t in [*self.model.named_parameters(), *self.model.named_buffers()]}
        return functional_call(self.model, frozen, (x,))

    def extra_repr(self) -> str:
        return f"kl_step_size={self.kl_step_size:g}, kl_noise_std={self.kl_noise_std:g}, kl_steps={self.kl_steps}"
