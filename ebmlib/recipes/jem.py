"""JEM: a classifier trained as an energy model of p(x, y) (Grathwohl et al., 2019)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_choice, check_count, check_generator, check_positive
from ..buffers import Initializer, ReplayBuffer
from ..losses import (
    Classification,
    ConditionalEnergies,
    ContrastiveDivergence,
    CrossEntropy,
    Energies,
    EnergyBatch,
    EnergyRegularization,
    Loss,
    LossInput,
    WeightedSum,
)
from ..models import ClassifierEnergy
from ..samplers import Sampler
from .base import StepCountingRecipe
from .ebm import EBM


def jem_loss(
    classification_weight: float = 1.0,
    p_x_weight: float = 1.0,
    p_x_given_y_weight: float = 0.0,
    regularization_weight: float = 0.0,
    positive_regularization_weight: float | None = None,
) -> WeightedSum:
    r"""JEM's objective as a :class:`~ebmlib.losses.WeightedSum`.

    .. math::

        \mathcal{L} = w_{y|x}\,\mathrm{CE}
            + w_x \big(\overline{E(x^+)} - \overline{E(x^-)}\big)
            + w_{x|y} \big(\overline{E(x^+, y^+)} - \overline{E(x^-, y^-)}\big)
            + \big(\alpha^+ \overline{E(x^+)^2} + \alpha \overline{E(x^-)^2}\big)\,[w_x > 0]
            + \big(\alpha^+ \overline{E(x^+, y^+)^2} + \alpha \overline{E(x^-, y^-)^2}\big)\,[w_{x|y} > 0],

    the negated :math:`\log p(y \mid x) + \log p(x)` (+ :math:`\log p(x \mid y)`)
    with CD estimating the generative gradients, and the energy L2 penalty on the
    energies of each CD term present: weight :math:`\alpha` =
    ``regularization_weight`` on the negatives' and :math:`\alpha^+` =
    ``positive_regularization_weight`` (default :math:`\alpha`) on the data's (see
    :class:`~ebmlib.losses.EnergyRegularization` for why the data side may weigh
    more). Terms with weight 0 are left out (and so is sampling for them). The terms
    are named ``p_y_given_x``, ``p_x``, ``p_x_given_y``, ``energy_l2`` and
    ``energy_l2_given_y`` (metrics ``loss/<name>``).

    ebmlib's MNIST reference run is ``jem_loss(classification_weight=16, p_x_weight=1,
    regularization_weight=0.03, positive_regularization_weight=0.3)``: JEM's objective
    (cross-entropy + CD of :math:`p(x)` + L2 of the energies) with the cross-entropy
    weighted up, which raised both accuracy and the energy's out-of-distribution
    detection there, and the data's energies held near 0, which made the energy
    comparable across classes.

    Examples
    --------
    >>> from ebmlib.losses import Classification, ConditionalEnergies
    >>> loss = jem_loss(p_x_weight=0.0, p_x_given_y_weight=1.0, regularization_weight=0.1)
    >>> [name for name, weight in loss.weights.items() if weight > 0]
    ['p_y_given_x', 'p_x_given_y', 'energy_l2_given_y']
    >>> loss.needs() == {Classification, ConditionalEnergies}
    True
    """
    relative = 1.0  # the data side's weight relative to the negatives' (the term's weight is alpha)
    if positive_regularization_weight is not None:
        check_positive(positive_regularization_weight, "positive_regularization_weight", allow_zero=True)
        if positive_regularization_weight > 0 and not regularization_weight > 0:
            raise ValueError("positive_regularization_weight weighs the data side of the energy penalty, which needs "
                             f"regularization_weight > 0 (the negatives' side), got {regularization_weight}")
        if regularization_weight > 0:
            relative = positive_regularization_weight / regularization_weight
    return WeightedSum(
        {
            "p_y_given_x": (classification_weight, CrossEntropy()),
            "p_x": (p_x_weight, ContrastiveDivergence()),
            "p_x_given_y": (p_x_given_y_weight, ContrastiveDivergence(conditional=True)),
            "energy_l2": (regularization_weight if p_x_weight > 0 else 0.0, EnergyRegularization(
                positive_weight=relative)),
            "energy_l2_given_y": (regularization_weight if p_x_given_y_weight > 0 else 0.0, EnergyRegularization(
                conditional=True, positive_weight=relative)),
        }
    )


GENERATIVE_TERMS = ("p_x", "p_x_given_y", "energy_l2", "energy_l2_given_y")
"""The terms of :func:`jem_loss` other than the classifier's ``p_y_given_x``: those a warm-up ramps in."""

UNCONDITIONAL_CHAINS = ("marginal", "mixture")
"""The kinds of chains :class:`JEM` can run for :math:`p(x)` (its ``unconditional_chains``)."""


class JEM(StepCountingRecipe, EBM):
    r"""Joint Energy-based Model: :class:`EBM` with a :class:`~ebmlib.models.ClassifierEnergy`.

    The classifier's logits :math:`f(x)` define :math:`E(x) = -\operatorname{logsumexp} f(x)`
    and :math:`E(x, y) = -f(x)[y]`, so one network classifies
    (:math:`p(y \mid x)`) and generates (:math:`p(x)`, :math:`p(x \mid y)`).
    Each step evaluates the network **once** on data and all negatives and
    derives logits, unconditional and conditional energies from those logits.

    Parameters
    ----------
    model : ClassifierEnergy
        Checked: any other energy model is refused (JEM reads the classifier's logits).
    sampler : Sampler
        JEM uses ``Langevin(step_size=1.0, noise_std=0.01, n_steps=20)``.
    buffer : ReplayBuffer
        Give it ``n_classes`` for class-conditional chains.
    optimizer : torch.optim.Optimizer
    loss : Loss, optional
        Default ``jem_loss()``: cross-entropy + CD (:func:`jem_loss`).
    input_noise_std : float
        JEM adds noise of std 0.03 to data.
    unconditional_chains : {"marginal", "mixture"}
        How chains of :math:`p(x)` run, for the ``p_x`` term's negatives and for
        :meth:`generate` without labels. ``"marginal"`` (JEM's): Langevin on
        :math:`E(x) = -\operatorname{logsumexp} f(x)`. ``"mixture"``: draw classes
        :math:`y^- \sim \mathcal{U}\{0..K-1\}` and run class-conditional chains on
        :math:`E(x, y^-)`; their law is :math:`\frac1K \sum_y p(x \mid y)`, which is
        :math:`p(x)` when the model's :math:`p(y)` is uniform. Each chain follows
        one class's gradient, where a marginal chain follows the
        :math:`p(y \mid x)`-weighted sum of all of them, which can cancel on
        noise. When the loss also has a class-conditional term, the same chains
        are the negatives of both (half the sampling).
    n_negatives : int, optional
        Chains per step (default one per data row); see
        :class:`~ebmlib.recipes.ContrastiveRecipe`.
    mixture_steps : int
        With ``unconditional_chains="marginal"``: for the first ``mixture_steps``
        training steps the ``p_x`` term's negatives are mixture chains, then chains
        on :math:`E(x)` itself, continued from the same replay buffer (which needs
        ``n_classes``). Early on, when the chains are still noise, a chain on
        :math:`E(x)` can stay there (the classes' gradients cancel) while contrastive
        divergence makes the noise a plateau of high energy; mixture chains leave it.
        Afterwards :math:`E(x)` is trained against its own samples, so that chains on
        :math:`E(x)` from noise end in every class, not in low-energy blobs that no
        class-conditional chain visits. The count of steps taken is saved in
        ``state_dict`` (key ``steps_taken``), so a resumed run switches at the same step.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from ebmlib.buffers import ReplayBuffer, UniformInit
    >>> from ebmlib.models import ClassifierEnergy
    >>> from ebmlib.samplers import Langevin
    >>> model = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), n_classes=3)
    >>> jem = JEM(model, Langevin(step_size=1.0, noise_std=0.01, n_steps=5),
    ...           ReplayBuffer(32, UniformInit((1, 2, 2)), n_classes=3),
    ...           torch.optim.Adam(model.parameters(), lr=1e-3))
    >>> x, y = torch.rand(8, 1, 2, 2), torch.randint(3, (8,))
    >>> metrics = jem.training_step(x, y, generator=torch.Generator().manual_seed(0))
    >>> jem.classify(x).shape, jem.generate(4, y=torch.tensor([0, 1, 2, 0])).shape
    (torch.Size([8]), torch.Size([4, 1, 2, 2]))
    >>> jem.generate(4, chains="mixture").shape  # uniform classes, then chains on E(x, y)
    torch.Size([4, 1, 2, 2])
    """

    model: ClassifierEnergy

    def __init__(
        self,
        model: ClassifierEnergy,
        sampler: Sampler,
        buffer: ReplayBuffer,
        optimizer: torch.optim.Optimizer,
        loss: Loss | None = None,
        input_noise_std: float = 0.0,
        unconditional_chains: str = "marginal",
        n_negatives: int | None = None,
        mixture_steps: int = 0,
    ) -> None:
        if not isinstance(model, ClassifierEnergy):  # before anything reads model.n_classes
            raise TypeError(
                "model must be a ClassifierEnergy (JEM reads the classifier's logits f(x), E(x) = -logsumexp f(x)), "
                f"got {type(model).__name__}: wrap the classifier network, which returns (B, n_classes) logits, in "
                "ClassifierEnergy(network, n_classes=K)"
            )
        super().__init__(model, sampler, buffer, optimizer, jem_loss() if loss is None else loss, input_noise_std,
                         n_negatives)
        check_choice(unconditional_chains, UNCONDITIONAL_CHAINS, "unconditional_chains")
        if unconditional_chains == "mixture" and buffer.n_classes is None:
            raise ValueError('unconditional_chains="mixture" runs class-conditional chains: give the buffer n_classes')
        self.unconditional_chains = unconditional_chains
        if buffer.n_classes is not None and buffer.n_classes != model.n_classes:
            raise ValueError(f"buffer.n_classes={buffer.n_classes} differs from model.n_classes={model.n_classes}")
        self.mixture_steps = check_count(mixture_steps, "mixture_steps", minimum=0)
        if mixture_steps > 0 and (unconditional_chains != "marginal" or buffer.n_classes is None):
            raise ValueError(f"mixture_steps={mixture_steps} runs mixture chains before marginal ones: it needs "
                             'unconditional_chains="marginal" and a buffer with n_classes, got '
                             f"unconditional_chains={unconditional_chains!r}, buffer.n_classes={buffer.n_classes}")

    @property
    def p_x_chains(self) -> str:
        """The kind of chains of the ``p_x`` term at this step: ``unconditional_chains``, or ``"mixture"``
        during the first ``mixture_steps``."""
        return "mixture" if self.steps_taken < self.mixture_steps else self.unconditional_chains

    @property
    def n_classes(self) -> int:  # type: ignore[override]
        """The classifier's number of classes."""
        return self.model.n_classes

    def loss_inputs(
        self, needs: frozenset[type[LossInput]], x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> EnergyBatch:
        """Logits, unconditional and conditional energies from one forward pass over data and all negatives."""
        self.check_computable(self.loss, needs, {Energies, ConditionalEnergies, Classification})
        parts = [x]
        mixture = self.p_x_chains == "mixture"
        if Energies in needs and not mixture:
            parts.append(self.negatives(self.negatives_per_step(x), None, generator))
        if ConditionalEnergies in needs or (Energies in needs and mixture):
            negative_labels, conditional = self.conditional_negatives(x, generator)
            parts.append(conditional)
        logits = self.model.logits(torch.cat(parts)).split([len(t) for t in parts])
        energy = self.model.energy_from_logits
        inputs: list[LossInput] = []
        if Classification in needs:
            assert y is not None
            inputs.append(Classification(logits[0], y))
        if Energies in needs:
            inputs.append(Energies(energy(logits[0]), energy(logits[1])))  # logits[1] is logits[-1] for a mixture
        if ConditionalEnergies in needs:
            inputs.append(ConditionalEnergies(energy(logits[0], y), energy(logits[-1], negative_labels)))
        return EnergyBatch(*inputs)

    @torch.no_grad()
    def generate(
        self,
        n: int,
        y: Tensor | None = None,
        start: Initializer | Tensor | None = None,
        n_steps: int | None = None,
        generator: torch.Generator | None = None,
        chains: str | None = None,
    ) -> Tensor:
        """:meth:`~ebmlib.recipes.ContrastiveRecipe.generate`; without ``y``, chains of ``chains``' kind.

        ``chains`` (default ``unconditional_chains``) is ``"marginal"``, Langevin on the
        model's own :math:`E(x)`, or ``"mixture"``: classes drawn uniformly (on
        ``generator``'s device), then chains on :math:`E(x, y)`, like the ``p_x`` term's
        negatives of that kind (see the class's example).
        """
        check_generator(generator)
        kind = self.unconditional_chains if chains is None else check_choice(chains, UNCONDITIONAL_CHAINS, "chains")
        if y is None and kind == "mixture" and n >= 1:
            device = generator.device if generator is not None else self.buffer.samples.device
            y = self.uniform_classes(n, device, generator)
        return super().generate(n, y, start, n_steps, generator)

    @torch.no_grad()
    def classify(self, x: Tensor) -> Tensor:
        """Predicted classes ``argmax_y p(y | x)``, shape ``(B,)``."""
        return self.model.logits(x).argmax(dim=1)
