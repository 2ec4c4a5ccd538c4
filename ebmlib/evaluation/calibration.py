"""Temperature scaling: one scalar that calibrates a classifier energy's confidence."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from .._checks import check_batch, check_labels, check_positive
from ..models.classifier import ClassifierEnergy
from .classification import batched


def fit_temperature(logits: Tensor, labels: Tensor, max_iter: int = 100) -> Tensor:
    r"""The temperature :math:`T` that minimises the negative log-likelihood of held-out labels.

    .. math::

        T = \exp(\hat t), \qquad
        \hat t = \arg\min_t \; -\frac1N \sum_{i=1}^N \log \operatorname{softmax}\big(f_i / e^{t}\big)[y_i],

    found by L-BFGS (strong Wolfe line search) on :math:`t = \log T`, starting at
    :math:`T = 1`, in float64. :math:`T > 1` softens an over-confident classifier,
    :math:`T < 1` sharpens an under-confident one; the predicted classes never change
    (Guo et al. 2017). Fit it on data the classifier was not trained on.

    Parameters
    ----------
    logits : Tensor, shape ``(N, K)``
        Held-out logits :math:`f_i`.
    labels : Tensor of int64, shape ``(N,)``
        Their labels :math:`y_i`.
    max_iter : int
        L-BFGS iterations (it converges in a few on this one-dimensional problem).

    Returns
    -------
    Tensor
        Scalar temperature :math:`T > 0`, detached, in ``logits``' dtype.

    Examples
    --------
    Labels drawn from ``softmax(f)`` and logits ``3 f`` given to the fit: it finds ``T`` near 3.

    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> f = 2 * torch.randn(5000, 3, generator=gen)
    >>> labels = torch.multinomial(f.softmax(dim=1), 1, generator=gen).squeeze(1)
    >>> temperature = fit_temperature(3 * f, labels)
    >>> bool(2.8 < temperature < 3.2)
    True
    """
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must have shape (N, K) with N >= 1 and K >= 2, got {got}")
    check_batch(logits, "logits")
    check_labels(labels, logits.shape[0], logits.shape[1], "labels")
    if max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter}")
    held_out = logits.detach().double()
    log_temperature = torch.zeros((), dtype=torch.float64, device=logits.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def negative_log_likelihood() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(held_out / log_temperature.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(negative_log_likelihood)
    return log_temperature.detach().exp().to(logits.dtype)


class TemperatureScaled(ClassifierEnergy):
    r"""A classifier energy whose logits are divided by a temperature: :math:`f_\theta(x) / T`.

    .. math::

        p(y \mid x) = \operatorname{softmax}\big(f_\theta(x) / T\big)[y], \qquad
        E(x) = -\log \sum_k \exp\big(f_\theta(x)[k] / T\big), \qquad
        E(x, y) = -f_\theta(x)[y] / T.

    It *shares* the wrapped classifier's network (nothing is copied; training one
    trains the other) and keeps :math:`T` as a buffer, so it appears in
    ``state_dict()`` and follows ``.to(device)``. Use :meth:`fit` to choose
    :math:`T` on held-out data with :func:`fit_temperature`. Note that :math:`T`
    also rescales the energy, i.e. it tempers the density :math:`p(x)` too.

    Parameters
    ----------
    classifier : ClassifierEnergy
        The classifier; its ``network``'s logits are scaled.
    temperature : float or Tensor
        :math:`T > 0`.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import ClassifierEnergy
    >>> classifier = ClassifierEnergy(torch.nn.Linear(2, 3), n_classes=3)
    >>> scaled = TemperatureScaled(classifier, temperature=2.0)
    >>> x = torch.randn(4, 2)
    >>> torch.allclose(scaled.logits(x), classifier.logits(x) / 2)
    True
    >>> sorted(scaled.state_dict())
    ['network.bias', 'network.weight', 'temperature']
    """

    temperature: Tensor

    def __init__(self, classifier: ClassifierEnergy, temperature: float | Tensor) -> None:
        if not isinstance(classifier, ClassifierEnergy):
            raise TypeError(f"classifier must be a ClassifierEnergy, got {type(classifier).__name__}")
        if type(classifier).logits is not ClassifierEnergy.logits:
            raise TypeError(
                f"classifier must compute its logits with its network, but {type(classifier).__name__} overrides "
                "logits(); wrap the underlying ClassifierEnergy instead"
            )
        value = float(temperature)
        if not math.isfinite(value):
            raise ValueError(f"temperature must be finite, got {value}")
        check_positive(value, "temperature")
        super().__init__(classifier.network, classifier.n_classes)
        self.register_buffer("temperature", torch.tensor(value))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The tempered energy :math:`E(x)` or :math:`E(x, y)`, shape ``(B,)``, checked by
        :func:`~ebmlib.models.check_energy`."""
        return super().forward(x, y)

    def logits(self, x: Tensor) -> Tensor:
        """The network's logits divided by the temperature, shape ``(B, n_classes)``."""
        return super().logits(x) / self.temperature.to(x.dtype)

    @classmethod
    def fit(
        cls, classifier: ClassifierEnergy, x: Tensor, labels: Tensor, batch_size: int = 500, max_iter: int = 100
    ) -> TemperatureScaled:
        """Wrap ``classifier`` with the temperature :func:`fit_temperature` finds on held-out ``(x, labels)``.

        The logits are computed without gradients, ``batch_size`` inputs at a time, in the
        classifier's current train/eval mode (call ``classifier.eval()`` first for dropout or batch norm).

        Examples
        --------
        >>> import torch
        >>> from ebmlib.models import ClassifierEnergy
        >>> classifier = ClassifierEnergy(torch.nn.Linear(2, 2), n_classes=2)
        >>> x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
        >>> scaled = TemperatureScaled.fit(classifier, x, (x[:, 0] > 0).long())
        >>> bool(scaled.temperature > 0)
        True
        """
        logits = batched(classifier.logits, x, batch_size)
        return cls(classifier, fit_temperature(logits, labels, max_iter))

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes}, temperature={float(self.temperature):.4g}"
