"""Noise-contrastive estimation of an energy model: tell data from samples of a known noise density."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._checks import check_batch, check_count, check_same_dtype
from ..losses import EnergyBatch, Loss, LossInput
from ..losses.noise_contrastive import NoiseContrast, NoiseContrastiveEstimation
from ..models import EnergyModel
from .base import LossRecipe


class GaussianNoise(nn.Module):
    r"""A diagonal Gaussian :math:`p_n = \mathcal{N}(\mu, \operatorname{diag}(s^2))` to draw from and evaluate.

    Its mean and standard deviation are buffers (they follow ``.to(device)``
    and are saved with the recipe).

    Parameters
    ----------
    mean : Tensor, shape ``event_shape``
    std : Tensor, shape ``event_shape``
        Positive.

    Examples
    --------
    >>> noise = GaussianNoise(torch.zeros(2), torch.ones(2))
    >>> x = noise.sample(3, generator=torch.Generator().manual_seed(0))
    >>> x.shape, round(float(noise.log_prob(torch.zeros(1, 2))), 4)  # -log(2 pi)
    (torch.Size([3, 2]), -1.8379)
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        if mean.shape != std.shape:
            raise ValueError(f"mean and std must have the same shape, got {tuple(mean.shape)} and {tuple(std.shape)}")
        if not bool((std > 0).all()) or not bool(torch.isfinite(mean).all()):
            raise ValueError("std must be positive and mean finite everywhere")
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())

    @classmethod
    def matching(cls, x: Tensor) -> GaussianNoise:
        """The Gaussian with the mean and standard deviation of data ``x`` of shape ``(N, *event_shape)``.

        Examples
        --------
        >>> GaussianNoise.matching(torch.tensor([[0.0, 1.0], [2.0, 3.0]])).mean
        tensor([1., 2.])
        """
        check_batch(x, "x")
        if x.shape[0] < 2:
            raise ValueError(f"x must hold at least 2 points to match a standard deviation, got {x.shape[0]}")
        return cls(x.mean(0), x.std(0))

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one sample."""
        return tuple(self.mean.shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws, shape ``(n, *event_shape)``."""
        noise = torch.randn((n, *self.event_shape), generator=generator, device=self.mean.device)
        return self.mean + self.std * noise

    def log_prob(self, x: Tensor) -> Tensor:
        """:math:`\\log p_n(x)` of a batch ``(B, *event_shape)``, shape ``(B,)``."""
        z = ((x - self.mean) / self.std).flatten(1)
        return -0.5 * z.pow(2).sum(1) - self.std.log().sum() - 0.5 * z.shape[1] * math.log(2 * math.pi)


class NoiseContrastiveEBM(LossRecipe):
    r"""Train an energy model and its log-normaliser by noise-contrastive estimation; no sampler.

    One :meth:`training_step` on data :math:`x_{1..B}` draws
    :math:`M = \nu B` samples :math:`\tilde x_j \sim p_n` from ``noise``
    (:math:`\nu` = ``noise_ratio``), evaluates the model once on
    :math:`[x; \tilde x]` and :math:`\log p_n` on both into a
    :class:`~ebmlib.losses.NoiseContrast`, and takes one ``optimizer`` step on
    the loss (default :class:`~ebmlib.losses.NoiseContrastiveEstimation`, whose
    learnable :math:`c` estimates :math:`\log Z_\theta`). There are no chains and
    no replay buffer.

    Parameters
    ----------
    model : EnergyModel
    noise : GaussianNoise
        The noise distribution :math:`p_n`; it should cover the data (e.g.
        :meth:`GaussianNoise.matching` the data).
    optimizer : torch.optim.Optimizer
        Over the parameters of ``model`` *and* of ``loss`` (its ``log_normalizer``).
    loss : Loss, optional
        Default :class:`~ebmlib.losses.NoiseContrastiveEstimation`.
    noise_ratio : int
        Noise samples per data point, :math:`\nu \ge 1`.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.losses import NoiseContrastiveEstimation
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> model, loss = NetworkEnergy(MLP(2, 1, hidden=16)), NoiseContrastiveEstimation()
    >>> optimizer = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-2)
    >>> recipe = NoiseContrastiveEBM(model, GaussianNoise(torch.zeros(2), torch.ones(2)), optimizer, loss)
    >>> sorted(recipe.training_step(torch.randn(32, 2), generator=torch.Generator().manual_seed(0)))
    ['accuracy', 'log_normalizer', 'loss']
    """

    def __init__(
        self,
        model: EnergyModel,
        noise: GaussianNoise,
        optimizer: torch.optim.Optimizer,
        loss: Loss | None = None,
        noise_ratio: int = 1,
    ) -> None:
        super().__init__(model, optimizer, NoiseContrastiveEstimation() if loss is None else loss)
        self.noise = noise
        self.noise_ratio = check_count(noise_ratio, "noise_ratio")
        trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
        left_out = [name for name, p in self.loss.named_parameters() if id(p) not in trained]
        if left_out:
            raise ValueError(f"optimizer must also train the loss's parameters ({', '.join(left_out)}): build it "
                             "over [*model.parameters(), *loss.parameters()]")

    # ------------------------------------------------------------------ the Recipe protocol
    def data_parallel_modules(self) -> list[nn.Module]:
        """``[model, loss]``: the loss holds the learnable log-normaliser."""
        return [self.model, self.loss]

    def check_inputs(self, x: Tensor, y: Tensor | None = None) -> None:
        """Raise unless ``x`` is a finite floating batch of the noise's event shape and the model's dtype."""
        check_batch(x, "x", self.noise.event_shape)
        check_same_dtype(x, self.model)

    def loss_inputs(
        self, needs: frozenset[type[LossInput]], x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> EnergyBatch:
        """Compute :class:`~ebmlib.losses.NoiseContrast` (labels are not used); a ``ValueError`` names any other
        kind asked for."""
        self.check_computable(self.loss, needs, {NoiseContrast})
        noise = self.noise.sample(self.noise_ratio * x.shape[0], generator).to(x.dtype)
        data_energy, noise_energy = self.model(torch.cat([x, noise])).split([x.shape[0], noise.shape[0]])
        log_density = self.noise.log_prob(torch.cat([x, noise])).to(x.dtype)
        data_log_density, noise_log_density = log_density.split([x.shape[0], noise.shape[0]])
        return EnergyBatch(NoiseContrast(data_energy, noise_energy, data_log_density, noise_log_density))

    def extra_repr(self) -> str:
        return f"noise_ratio={self.noise_ratio}"
