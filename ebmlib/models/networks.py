"""Small reference networks: the seed's swish CNN for 28x28 images and an MLP."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils import parametrizations

from .base import EnergyModel


def spectrally_normalised(layer: nn.Module, enabled: bool = True) -> nn.Module:
    r"""``layer`` with its weight divided by its largest singular value (when ``enabled``).

    .. math::

        W_{\mathrm{SN}} = W / \sigma(W), \qquad \sigma(W) = \max_{\lVert v\rVert = 1} \lVert W v\rVert,

    with :math:`\sigma` estimated by power iteration
    (:func:`torch.nn.utils.parametrizations.spectral_norm`, Miyato et al. 2018): one
    iteration each time the weight is read in training mode, the last estimate reused
    in eval mode. A convolution's weight is read as the matrix
    ``(out_channels, in_channels * kernel_height * kernel_width)``: a linear layer
    becomes 1-Lipschitz, a convolution at most
    :math:`\sqrt{\text{kernel\_height} \cdot \text{kernel\_width}}`-Lipschitz (each
    input feeds at most that many patches). The power iteration's vectors ``_u``, ``_v``
    are buffers (saved in ``state_dict``); their random start comes from the global
    RNG, like the weights' initialisation.

    Parameters
    ----------
    layer : nn.Module
        A module with a ``weight`` parameter (``nn.Linear``, ``nn.Conv2d``, ...).
    enabled : bool
        Return ``layer`` untouched when ``False``.

    Returns
    -------
    nn.Module
        The same module object, parametrized in place.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)  # the weights' and the power iteration's random start
    >>> layer = spectrally_normalised(torch.nn.Linear(4, 3))
    >>> for _ in range(20):
    ...     _ = layer(torch.zeros(1, 4))
    >>> round(float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2)), 3)
    1.0
    """
    return parametrizations.spectral_norm(layer) if enabled else layer


class Swish(nn.Module):
    r"""Swish activation :math:`x \cdot \sigma(x)` (SiLU).

    Examples
    --------
    >>> import torch
    >>> Swish()(torch.zeros(2))
    tensor([0., 0.])
    """

    def forward(self, x: Tensor) -> Tensor:
        r""":math:`x \cdot \sigma(x)`, element-wise; same shape as ``x``."""
        return nn.functional.silu(x)


class SwishCNN(nn.Sequential):
    """The seed's CNN: four strided convolutions with swish, then a linear head.

    Input ``(B, channels, 28, 28)``, output ``(B, n_outputs)`` logits. Strides
    ``1, 2, 2, 2`` take 28x28 to 4x4 feature maps (no pooling, no batch norm, so
    the energy is a smooth function of the input, as SGLD needs).

    Parameters
    ----------
    channels : int
        Input channels (1 for MNIST).
    width : int
        Channels of the first convolution; later ones use ``2 * width`` and ``4 * width``.
    n_outputs : int
        Number of logits (10 digit classes).
    spectral_norm : bool
        Divide every convolution's and the head's weight by its largest singular
        value (see :func:`spectrally_normalised`), a common way to keep an EBM's
        energy smooth and its training stable. Off by default.

    Examples
    --------
    >>> import torch
    >>> SwishCNN()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> SwishCNN(width=8, spectral_norm=True)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, channels: int = 1, width: int = 32, n_outputs: int = 10, spectral_norm: bool = False) -> None:
        def normalised(layer: nn.Module) -> nn.Module:
            return spectrally_normalised(layer, spectral_norm)

        super().__init__(
            normalised(nn.Conv2d(channels, width, 3, stride=1, padding=1)),
            Swish(),
            normalised(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)),  # 28 -> 14
            Swish(),
            normalised(nn.Conv2d(2 * width, 4 * width, 4, stride=2, padding=1)),  # 14 -> 7
            Swish(),
            normalised(nn.Conv2d(4 * width, 4 * width, 3, stride=2, padding=0)),  # 7 -> 3
            Swish(),
            nn.Flatten(),
            normalised(nn.Linear(4 * width * 3 * 3, n_outputs)),
        )


class MLP(nn.Sequential):
    """A fully connected swish network ``(B, in_features) -> (B, out_features)``.

    Parameters
    ----------
    in_features, out_features : int
        Input and output sizes.
    hidden : int
        Units in each hidden layer.
    depth : int
        Number of hidden layers.
    spectral_norm : bool
        Divide every linear layer's weight by its largest singular value (see
        :func:`spectrally_normalised`), which makes the network 1-Lipschitz
        (swish itself has Lipschitz constant about 1.1). Off by default.

    Examples
    --------
    >>> import torch
    >>> MLP(2, 1)(torch.zeros(5, 2)).shape
    torch.Size([5, 1])
    >>> MLP(2, 1, spectral_norm=True)(torch.zeros(5, 2)).shape
    torch.Size([5, 1])
    """

    def __init__(
        self, in_features: int, out_features: int, hidden: int = 128, depth: int = 3, spectral_norm: bool = False
    ) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [spectrally_normalised(nn.Linear(width, hidden), spectral_norm), Swish()]
            width = hidden
        layers.append(spectrally_normalised(nn.Linear(width, out_features), spectral_norm))
        super().__init__(*layers)


class NetworkEnergy(EnergyModel):
    """Energy model from any network with one output: ``E(x) = network(x)[:, 0]``.

    Parameters
    ----------
    network : nn.Module
        Maps ``(B, *event_shape)`` to ``(B, 1)`` or ``(B,)``.

    Examples
    --------
    >>> import torch
    >>> model = NetworkEnergy(MLP(2, 1))
    >>> model(torch.zeros(4, 2)).shape
    torch.Size([4])
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if y is not None:
            raise ValueError("NetworkEnergy is unconditional: pass y=None")
        out = self.network(x)
        return out.squeeze(1) if out.dim() == 2 and out.shape[1] == 1 else out

