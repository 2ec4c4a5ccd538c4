"""Small reference networks: the seed's swish CNN for 28x28 images and an MLP."""

from __future__ import annotations

from torch import Tensor, nn

from .base import EnergyModel


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

    Examples
    --------
    >>> import torch
    >>> SwishCNN()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, channels: int = 1, width: int = 32, n_outputs: int = 10) -> None:
        super().__init__(
            nn.Conv2d(channels, width, 3, stride=1, padding=1),
            Swish(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),  # 28 -> 14
            Swish(),
            nn.Conv2d(2 * width, 4 * width, 4, stride=2, padding=1),  # 14 -> 7
            Swish(),
            nn.Conv2d(4 * width, 4 * width, 3, stride=2, padding=0),  # 7 -> 3
            Swish(),
            nn.Flatten(),
            nn.Linear(4 * width * 3 * 3, n_outputs),
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

    Examples
    --------
    >>> import torch
    >>> MLP(2, 1)(torch.zeros(5, 2)).shape
    torch.Size([5, 1])
    """

    def __init__(self, in_features: int, out_features: int, hidden: int = 128, depth: int = 3) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), Swish()]
            width = hidden
        layers.append(nn.Linear(width, out_features))
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

