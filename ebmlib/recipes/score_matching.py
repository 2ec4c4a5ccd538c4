"""Score matching without a sampler: denoising and sliced score matching of an energy model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import check_batch, check_choice, check_positive, check_same_dtype
from ..losses import EnergyBatch, Loss, LossInput
from ..losses.denoising_score_matching import DenoisingScoreMatching, NoisyScores
from ..losses.sliced_score_matching import SlicedScores
from ..models import EnergyModel
from .base import LossRecipe

PROJECTIONS = ("rademacher", "gaussian")


class ScoreMatchingEBM(LossRecipe):
    r"""Train an energy model by matching its score :math:`s_\theta = -\nabla_x E_\theta` to the data's.

    No sampler, no chains, no replay buffer: one :meth:`training_step` computes
    what the loss :meth:`~ebmlib.losses.Loss.needs` from the data alone and takes
    one ``optimizer`` step:

    - :class:`~ebmlib.losses.NoisyScores` for
      :class:`~ebmlib.losses.DenoisingScoreMatching`: :math:`\epsilon \sim \mathcal{N}(0, I)`,
      a level :math:`\sigma_i` per sample (uniform over ``noise_std`` if it lists
      several), and :math:`s_\theta(x + \sigma\epsilon)` with its graph kept;
    - :class:`~ebmlib.losses.SlicedScores` for
      :class:`~ebmlib.losses.SlicedScoreMatching`: a direction :math:`v`
      (``projection``: Rademacher or standard Gaussian), :math:`s_\theta(x)`
      and :math:`v^\top \nabla_x s_\theta(x)\, v` by a second backward pass.

    The trained energy is used like any other: pass ``recipe.model`` to a sampler.

    Parameters
    ----------
    model : EnergyModel
    optimizer : torch.optim.Optimizer
        Over ``model``'s parameters.
    event_shape : tuple of int
        Shape of one data point (``(2,)`` for 2D points).
    loss : Loss, optional
        Default :class:`~ebmlib.losses.DenoisingScoreMatching`.
    noise_std : float or sequence of float
        The noise level :math:`\sigma > 0` of denoising score matching, or several.
    projection : {"rademacher", "gaussian"}
        Distribution of the directions :math:`v` of sliced score matching.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> model = NetworkEnergy(MLP(2, 1, hidden=16))
    >>> recipe = ScoreMatchingEBM(model, torch.optim.Adam(model.parameters(), lr=1e-3), (2,), noise_std=[0.1, 0.5])
    >>> metrics = recipe.training_step(torch.randn(32, 2), generator=torch.Generator().manual_seed(0))
    >>> sorted(metrics)
    ['loss', 'score_norm']
    """

    noise_stds: Tensor

    def __init__(
        self,
        model: EnergyModel,
        optimizer: torch.optim.Optimizer,
        event_shape: Sequence[int],
        loss: Loss | None = None,
        noise_std: float | Sequence[float] = 0.1,
        projection: str = "rademacher",
    ) -> None:
        super().__init__(model, optimizer, DenoisingScoreMatching() if loss is None else loss)
        levels = [noise_std] if isinstance(noise_std, (int, float)) else list(noise_std)
        if not levels:
            raise ValueError("noise_std must be a positive number or a non-empty sequence of them, got []")
        for level in levels:
            check_positive(level, "noise_std")
        check_choice(projection, PROJECTIONS, "projection")
        self.event_shape = tuple(int(n) for n in event_shape)
        self.projection = projection
        self.register_buffer("noise_stds", torch.tensor([float(level) for level in levels]), persistent=False)

    # ------------------------------------------------------------------ the Recipe protocol
    def check_inputs(self, x: Tensor, y: Tensor | None = None) -> None:
        """Raise unless ``x`` is a finite floating batch ``(B, *event_shape)`` of the model's dtype."""
        check_batch(x, "x", self.event_shape)
        check_same_dtype(x, self.model)

    # ------------------------------------------------------------------ what the loss reads
    def loss_inputs(
        self, needs: frozenset[type[LossInput]], x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> EnergyBatch:
        """Compute :class:`~ebmlib.losses.NoisyScores` and/or :class:`~ebmlib.losses.SlicedScores` (labels are
        not used); a ``ValueError`` names any other kind asked for."""
        self.check_computable(self.loss, needs, {NoisyScores, SlicedScores})
        inputs: list[LossInput] = []
        if NoisyScores in needs:
            inputs.append(self.noisy_scores(x, generator))
        if SlicedScores in needs:
            inputs.append(self.sliced_scores(x, generator))
        return EnergyBatch(*inputs)

    def noisy_scores(self, x: Tensor, generator: torch.Generator | None) -> NoisyScores:
        r""":math:`\epsilon`, :math:`\sigma_i` and :math:`s_\theta(x + \sigma_i \epsilon)` (graph kept)."""
        levels = self.noise_stds.to(dtype=x.dtype)
        if len(levels) == 1:
            sigma = levels.expand(x.shape[0])
        else:
            sigma = levels[torch.randint(len(levels), (x.shape[0],), generator=generator, device=x.device)]
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        noisy = (x + sigma.reshape(-1, *([1] * (x.dim() - 1))) * noise).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.model(noisy).sum(), noisy, create_graph=True)
        return NoisyScores(noise=noise, noise_std=sigma, score=-grad)

    def sliced_scores(self, x: Tensor, generator: torch.Generator | None) -> SlicedScores:
        r""":math:`v`, :math:`s_\theta(x)` and :math:`v^\top \nabla_x s_\theta(x)\, v` (graphs kept)."""
        v = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if self.projection == "rademacher":
            v = v.sign()
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.model(x).sum(), x, create_graph=True)
        score = -grad
        (jacobian_v,) = torch.autograd.grad((score * v).sum(), x, create_graph=True)
        return SlicedScores(projection=v, score=score, projected_jacobian=(jacobian_v * v).flatten(1).sum(1))

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}, projection={self.projection!r}"
