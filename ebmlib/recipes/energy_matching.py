r"""Energy matching (Balcerak et al., 2025): a scalar energy whose gradient flow is trained by flow matching,
then sharpened by contrastive divergence."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import (
    check_batch,
    check_choice,
    check_count,
    check_generator,
    check_positive,
    check_probability,
    check_same_dtype,
)
from ..losses import ContrastiveDivergence, Energies, EnergyBatch, Loss, LossInput, WeightedSum
from ..losses.flow_matching import COUPLINGS, FlowMatching, FlowVelocities, linear_paths
from ..models import EnergyModel
from ..samplers import Langevin, Sampler
from .base import StepCountingRecipe


def energy_matching_loss(cd_weight: float = 1.0) -> WeightedSum:
    r"""The loss of energy matching's main phase: :math:`\mathcal{L}_{\text{flow}} + \lambda\, \mathcal{L}_{\text{CD}}`.

    A :class:`~ebmlib.losses.WeightedSum` of :class:`~ebmlib.losses.FlowMatching` (term
    ``"flow"``, weight 1) and :class:`~ebmlib.losses.ContrastiveDivergence` (term ``"cd"``,
    weight :math:`\lambda` = ``cd_weight``). With ``cd_weight=0`` the CD term is left out
    (nothing is sampled): the loss of the warm-up phase, with the same metric names.

    Parameters
    ----------
    cd_weight : float
        :math:`\lambda \ge 0`.

    Examples
    --------
    >>> loss = energy_matching_loss(cd_weight=0.5)
    >>> dict(loss.weights)
    {'flow': 1.0, 'cd': 0.5}
    >>> sorted(kind.__name__ for kind in loss.needs()), energy_matching_loss(0.0).needs() == FlowMatching().needs()
    (['Energies', 'FlowVelocities'], True)
    """
    check_positive(cd_weight, "cd_weight", allow_zero=True)
    return WeightedSum({"flow": (1.0, FlowMatching()), "cd": (cd_weight, ContrastiveDivergence())})


class EnergyMatchingEBM(StepCountingRecipe):
    r"""Energy matching: one time-independent energy :math:`E_\theta(x)` whose flow :math:`-\nabla_x E_\theta`
    carries noise to the data, and whose Boltzmann law :math:`e^{-E_\theta / T}` models the data near it.

    Balcerak et al. (2025), *Energy Matching: Unifying Flow Matching and Energy-Based
    Models for Generative Modeling*. Training has two phases, switched by the count of
    steps taken (``steps_taken``, saved in ``state_dict`` under that key, so a
    resumed run switches at the same step):

    1. **warm-up** (the first ``warmup_steps`` steps): flow matching of the velocity
       :math:`v = -\nabla_x E_\theta(x_t)` on straight paths from Gaussian noise
       :math:`x_0 \sim \mathcal{N}(0, \sigma_0^2 I)` (:math:`\sigma_0` = ``source_std``)
       to the data :math:`x_1`, paired by a mini-batch optimal-transport plan
       (``coupling="ot"``, :func:`~ebmlib.losses.ot_pairing`) or independently
       (:func:`~ebmlib.losses.linear_paths`), loss ``warmup_loss``;
    2. **main phase**: ``loss``, by default :func:`~ebmlib.recipes.energy_matching_loss`,
       :math:`\mathcal{L}_{\text{flow}} + \lambda\, \mathcal{L}_{\text{CD}}`, whose
       contrastive-divergence term
       :math:`\operatorname{mean} E(x^+) - \operatorname{mean} E(x^-)` lowers the energy
       of the data against negatives :math:`x^-` sampled from the energy itself
       (:meth:`negatives`).

    The negatives, like :meth:`generate`'s samples, come from the library's samplers:
    a share ``1 - negatives_from_data`` starts from noise and follows the flow
    (``flow_sampler``, by default ``Langevin(step_size=0.01, noise_std=0, n_steps=100)``:
    100 Euler steps of :math:`\dot x = -\nabla_x E(x)` over the flow's unit of time,
    noise to data), the rest starts at data points; then all run ``sampler``, Langevin
    chains on :math:`e^{-E/T}` (``Langevin(step_size=h, noise_std=sqrt(2 h T))``, the paper's
    :math:`\epsilon_{\max} = T`: its temperature schedule with ``time_cutoff = 1``, zero along
    the flow, :math:`T` after it). The paper splits its negatives half and half, as does the
    default.

    Cost of a step, in gradient evaluations (rows the energy is evaluated and differentiated
    at): the flow term's :math:`B` (with a second-order backward) in both phases; in the main
    phase, in addition, the :math:`B + M` energies of data and negatives, ``flow_sampler.n_steps``
    per noise-started chain and ``sampler.n_steps`` per chain (:math:`M` = ``n_negatives``).
    The warm-up needs no sampling, which makes it cheap: on a 2D mixture of four Gaussians with
    unequal weights (``tests/test_energy_matching.py``), 600 warm-up and 20 main steps (142k
    gradient evaluations) give samples at grid KL 0.09 (:func:`~ebmlib.evaluation.grid_kl`)
    with the modes' weights within 0.01, where plain contrastive divergence
    (:class:`~ebmlib.recipes.EBM`) given as many evaluations scores 0.38.

    Parameters
    ----------
    model : EnergyModel
        The scalar energy :math:`E_\theta`.
    sampler : Sampler
        Chains at the model's temperature, for the negatives and the end of :meth:`generate`.
    optimizer : torch.optim.Optimizer
        Over ``model``'s parameters.
    event_shape : tuple of int
        Shape of one data point (``(2,)`` for 2D points).
    warmup_steps : int
        Steps of flow matching alone before the main phase, ``>= 0``.
    loss : Loss, optional
        Loss of the main phase; default ``energy_matching_loss(cd_weight)``.
    warmup_loss : Loss, optional
        Loss of the warm-up; default ``energy_matching_loss(0.0)`` (the flow term alone).
    cd_weight : float
        :math:`\lambda` of the default ``loss`` (1 on the 2D toy above; the paper used
        :math:`10^{-3}` on CIFAR-10 images).
    flow_sampler : Sampler, optional
        Transports noise along the flow; default ``Langevin(step_size=0.01, noise_std=0.0, n_steps=100)``.
    source_std : float
        :math:`\sigma_0` of the Gaussian source.
    coupling : {"ot", "independent"}
        How noise and data points are paired for the flow term.
    negatives_from_data : float
        Share of the negatives whose chains start at data points (drawn from the batch), in :math:`[0, 1]`.
    n_negatives : int, optional
        Chains per step in the main phase (default one per data row).

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> from ebmlib.samplers import Langevin
    >>> model = NetworkEnergy(MLP(2, 1, hidden=16))
    >>> recipe = EnergyMatchingEBM(model, Langevin(step_size=0.01, noise_std=0.05, n_steps=5),
    ...                            torch.optim.Adam(model.parameters(), lr=1e-3), (2,), warmup_steps=1,
    ...                            flow_sampler=Langevin(step_size=0.1, noise_std=0.0, n_steps=10))
    >>> g = torch.Generator().manual_seed(0)
    >>> sorted(recipe.training_step(torch.randn(16, 2), generator=g))  # warm-up: flow matching
    ['flow/velocity_norm', 'loss', 'loss/flow']
    >>> sorted(recipe.training_step(torch.randn(16, 2), generator=g))[:3]  # then with contrastive divergence
    ['cd/energy_gap', 'cd/negative_energy', 'cd/positive_energy']
    >>> recipe.steps_taken, recipe.in_warmup, recipe.generate(5, generator=g).shape
    (2, False, torch.Size([5, 2]))
    """

    def __init__(
        self,
        model: EnergyModel,
        sampler: Sampler,
        optimizer: torch.optim.Optimizer,
        event_shape: Sequence[int],
        warmup_steps: int,
        loss: Loss | None = None,
        warmup_loss: Loss | None = None,
        cd_weight: float = 1.0,
        flow_sampler: Sampler | None = None,
        source_std: float = 1.0,
        coupling: str = "ot",
        negatives_from_data: float = 0.5,
        n_negatives: int | None = None,
    ) -> None:
        super().__init__(model, optimizer, energy_matching_loss(cd_weight) if loss is None else loss)
        for name, part in (("sampler", sampler), ("flow_sampler", flow_sampler)):
            if not isinstance(part, Sampler) and (name == "sampler" or part is not None):
                raise TypeError(f"{name} must be an ebmlib Sampler, got {type(part).__name__}")
        if warmup_loss is not None and not isinstance(warmup_loss, Loss):
            raise TypeError(f"warmup_loss must be an ebmlib Loss, got {type(warmup_loss).__name__}")
        self.warmup_steps = check_count(warmup_steps, "warmup_steps", minimum=0)
        self.source_std = check_positive(source_std, "source_std")
        self.coupling = check_choice(coupling, COUPLINGS, "coupling")
        self.negatives_from_data = check_probability(negatives_from_data, "negatives_from_data")
        self.n_negatives = None if n_negatives is None else check_count(n_negatives, "n_negatives")
        self.event_shape = tuple(int(n) for n in event_shape)
        self.sampler = sampler
        self.flow_sampler = Langevin(step_size=0.01, noise_std=0.0, n_steps=100) if flow_sampler is None \
            else flow_sampler
        self.warmup_loss = energy_matching_loss(0.0) if warmup_loss is None else warmup_loss

    # ------------------------------------------------------------------ the phases
    @property
    def in_warmup(self) -> bool:
        """Whether the next step is a warm-up step (``steps_taken < warmup_steps``)."""
        return self.steps_taken < self.warmup_steps

    @property
    def active_loss(self) -> Loss:
        """Which loss the next step minimises (``warmup_loss`` during the warm-up, then ``loss``)."""
        return self.warmup_loss if self.in_warmup else self.loss


    # ------------------------------------------------------------------ the Recipe protocol
    def check_inputs(self, x: Tensor, y: Tensor | None = None) -> None:
        """Raise unless ``x`` is a finite floating batch ``(B, *event_shape)`` of the model's dtype (labels are
        not used)."""
        check_batch(x, "x", self.event_shape)
        check_same_dtype(x, self.model)

    # ------------------------------------------------------------------ what the loss reads
    def loss_inputs(
        self, needs: frozenset[type[LossInput]], x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> EnergyBatch:
        """Compute :class:`~ebmlib.losses.FlowVelocities` and/or :class:`~ebmlib.losses.Energies` (data
        against :meth:`negatives`); a ``ValueError`` names any other kind asked for."""
        self.check_computable(self.active_loss, needs, {FlowVelocities, Energies})
        inputs: list[LossInput] = []
        if FlowVelocities in needs:
            inputs.append(self.flow_velocities(x, generator))
        if Energies in needs:
            n = x.shape[0] if self.n_negatives is None else self.n_negatives
            negatives = self.negatives(n, x, generator)
            positive, negative = self.model(torch.cat([x, negatives])).split([len(x), len(negatives)])
            inputs.append(Energies(positive, negative))
        return EnergyBatch(*inputs)

    def source(self, n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
        r"""``n`` draws of the source :math:`\mathcal{N}(0, \sigma_0^2 I)`, with ``like``'s event shape, dtype and
        device."""
        return self.source_std * torch.randn((n, *like.shape[1:]), generator=generator, device=like.device,
                                             dtype=like.dtype)

    def flow_velocities(self, x: Tensor, generator: torch.Generator | None) -> FlowVelocities:
        r"""Noise paired with the data ``x`` (``coupling``), :math:`x_t`, and :math:`-\nabla_x E_\theta(x_t)` with
        its graph kept, against :math:`x_1 - x_0`."""
        x_t, _, target = linear_paths(self.source(x.shape[0], x, generator), x, self.coupling, generator)
        x_t.requires_grad_(True)
        (grad,) = torch.autograd.grad(self.model(x_t).sum(), x_t, create_graph=True)
        return FlowVelocities(velocity=-grad, target=target)

    def negatives(self, n: int, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples of the model for contrastive divergence: ``round(n * negatives_from_data)`` chains from
        rows of the data ``x`` (drawn with replacement), the others from noise moved by ``flow_sampler``; then
        ``sampler`` on all of them. Shape ``(n, *event_shape)``, detached."""
        from_data = round(n * self.negatives_from_data)
        starts = []
        if from_data > 0:
            starts.append(x[torch.randint(x.shape[0], (from_data,), generator=generator, device=x.device)].detach())
        if from_data < n:
            starts.append(self.flow_sampler.sample(self.model, self.source(n - from_data, x, generator),
                                                   generator=generator))
        return self.sampler.sample(self.model, torch.cat(starts), generator=generator)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(self, n: int, n_steps: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples of the learned energy: noise moved along the flow by ``flow_sampler``, then ``n_steps``
        steps of ``sampler`` (default its ``n_steps``; 0: the flow alone).

        Parameters
        ----------
        n : int
            Number of samples, ``>= 1``.
        n_steps : int, optional
            Steps of ``sampler`` after the flow.
        generator : torch.Generator, optional
            On the model's device.

        Returns
        -------
        Tensor, shape ``(n, *event_shape)``
        """
        check_generator(generator)
        check_count(n, "n")
        reference = next(self.model.parameters(), None)
        device = reference.device if reference is not None else torch.device("cpu")
        dtype = reference.dtype if reference is not None else torch.get_default_dtype()
        noise = self.source_std * torch.randn((n, *self.event_shape), generator=generator, device=device,
                                              dtype=dtype)
        x = self.flow_sampler.sample(self.model, noise, generator=generator)
        return self.sampler.sample(self.model, x, n_steps=n_steps, generator=generator)

    def extra_repr(self) -> str:
        return (f"event_shape={self.event_shape}, warmup_steps={self.warmup_steps}, coupling={self.coupling!r}, "
                f"source_std={self.source_std}, negatives_from_data={self.negatives_from_data}")
