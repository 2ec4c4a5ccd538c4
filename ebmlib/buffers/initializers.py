"""Where fresh chains start: uniform noise, a Gaussian, or per-class Gaussians."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from .._checks import check_batch, check_count, check_labels, check_positive, check_real


class Initializer(nn.Module, ABC):
    """Draws starting points for new chains: ``initializer(n, y=None, generator=None)``.

    Subclasses implement :meth:`forward`. Their parameters are registered buffers,
    so they follow ``.to(device)`` and ``state_dict()``.

    Parameters
    ----------
    event_shape : tuple of int
        Shape of one sample; ``n`` draws have shape ``(n, *event_shape)``.

    Examples
    --------
    >>> import torch
    >>> class Zeros(Initializer):
    ...     def forward(self, n, y=None, generator=None):
    ...         return torch.zeros(n, *self.event_shape)
    >>> Zeros((1, 2))(3).shape
    torch.Size([3, 1, 2])
    """

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        if isinstance(event_shape, int) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                   for d in event_shape):
            raise ValueError(f"event_shape must be a tuple of positive integers, got {event_shape!r}")
        self.event_shape = tuple(event_shape)

    @abstractmethod
    def forward(
        self, n: int, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """``n`` starting points.

        Parameters
        ----------
        n : int
            Number of points.
        y : Tensor of int64, shape ``(n,)``, optional
            Classes, for class-aware initializers (the others ignore it).
        generator : torch.Generator, optional
            Source of the random draws; on the initializer's device.

        Returns
        -------
        Tensor, shape ``(n, *event_shape)``
        """


class UniformInit(Initializer):
    """Uniform noise on the box ``[low, high]``, independently per coordinate.

    Parameters
    ----------
    event_shape : tuple of int
        Shape of one sample.
    low, high : float
        The box, ``low < high``.

    Examples
    --------
    >>> UniformInit((2,), low=-1.0, high=1.0)(3).shape
    torch.Size([3, 2])
    """

    _device_tracker: Tensor

    def __init__(self, event_shape: tuple[int, ...], low: float = -1.0, high: float = 1.0) -> None:
        super().__init__(event_shape)
        low, high = check_real(low, "low"), check_real(high, "high")
        if not low < high:
            raise ValueError(f"need low < high, got low={low}, high={high}")
        self.low, self.high = low, high
        self.register_buffer("_device_tracker", torch.zeros(0))

    def forward(self, n: int, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        t = self._device_tracker
        u = torch.rand((n, *self.event_shape), generator=generator, device=t.device, dtype=t.dtype)
        return self.low + (self.high - self.low) * u


class GaussianInit(Initializer):
    """Isotropic Gaussian ``mean + std * N(0, I)``.

    Parameters
    ----------
    event_shape : tuple of int
        Shape of one sample.
    mean : float
        Mean of every coordinate.
    std : float
        Standard deviation of every coordinate, ``> 0``.

    Examples
    --------
    >>> GaussianInit((1, 4, 4), std=0.5)(2).shape
    torch.Size([2, 1, 4, 4])
    """

    _device_tracker: Tensor

    def __init__(self, event_shape: tuple[int, ...], mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__(event_shape)
        self.mean, self.std = check_real(mean, "mean"), check_positive(std, "std")
        self.register_buffer("_device_tracker", torch.zeros(0))

    def forward(self, n: int, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        t = self._device_tracker
        z = torch.randn((n, *self.event_shape), generator=generator, device=t.device, dtype=t.dtype)
        return self.mean + self.std * z


class ClassGaussianInit(Initializer):
    r"""Per-class Gaussians fitted to data (JEM++'s informative initialisation).

    For class :math:`k`, draws :math:`\mu_k + L_k z` with :math:`z \sim \mathcal{N}(0, I)`
    and :math:`L_k L_k^\top = \Sigma_k + \epsilon I` (the class mean and covariance of
    the flattened data). Without labels, a class is drawn uniformly per sample.
    Samples are clamped to ``clamp`` if given.

    Parameters
    ----------
    data : Tensor, shape ``(N, *event_shape)``
    labels : Tensor of int64, shape ``(N,)``
    n_classes : int
    jitter : float
        :math:`\epsilon`, added to the covariance diagonal.
    clamp : (float, float), optional

    Examples
    --------
    >>> import torch
    >>> data, labels = torch.randn(100, 3), torch.arange(100) % 2
    >>> init = ClassGaussianInit(data, labels, n_classes=2)
    >>> init(4, y=torch.tensor([0, 1, 0, 1])).shape
    torch.Size([4, 3])
    """

    means: Tensor
    cholesky_factors: Tensor

    def __init__(
        self,
        data: Tensor,
        labels: Tensor,
        n_classes: int,
        jitter: float = 1e-4,
        clamp: tuple[float, float] | None = (-1.0, 1.0),
    ) -> None:
        check_batch(data, "data")
        n_classes = check_count(n_classes, "n_classes")
        check_labels(labels, data.shape[0], n_classes, "labels")
        check_positive(jitter, "jitter", allow_zero=True)
        super().__init__(tuple(data.shape[1:]))
        flat = data.flatten(1).double()
        dim = flat.shape[1]
        means, factors = [], []
        for k in range(n_classes):
            members = flat[labels == k]
            if members.shape[0] < 2:
                raise ValueError(f"class {k} has {members.shape[0]} samples in data; need at least 2")
            mean = members.mean(0)
            cov = torch.cov(members.T).reshape(dim, dim) + jitter * torch.eye(dim, dtype=flat.dtype)
            means.append(mean)
            factors.append(torch.linalg.cholesky(cov))
        self.n_classes = n_classes
        self.clamp = clamp
        self.register_buffer("means", torch.stack(means).to(data.dtype))
        self.register_buffer("cholesky_factors", torch.stack(factors).to(data.dtype))

    def forward(self, n: int, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        device = self.means.device
        if y is None:
            y = torch.randint(self.n_classes, (n,), generator=generator, device=device)
        z = torch.randn((n, self.means.shape[1]), generator=generator, device=device, dtype=self.means.dtype)
        # Colour z with every class's factor, then keep each sample's own class:
        # cheaper in memory than gathering one (D, D) factor per sample.
        coloured = torch.einsum("kij,nj->nki", self.cholesky_factors, z)
        x = self.means[y] + coloured[torch.arange(n, device=device), y]
        if self.clamp is not None:
            x = x.clamp(*self.clamp)
        return x.view(n, *self.event_shape)
