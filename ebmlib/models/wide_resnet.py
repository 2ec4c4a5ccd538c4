"""A Wide ResNet classifier in the shape JEM uses for CIFAR-10 (WRN-28-10), without batch norm by default."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

from torch import Tensor, nn

from .._checks import check_choice, check_count, check_positive
from .networks import Swish, spectrally_normalised

ACTIVATIONS = ("leaky_relu", "swish")
NORMS = (None, "group", "batch")


class WideResNet(nn.Module):
    r"""A Wide ResNet (Zagoruyko & Komodakis, 2016) of depth ``6n + 4`` and widening factor ``width``.

    Input ``(B, channels, H, W)``, output ``(B, n_outputs)`` logits; read it as an energy with
    :class:`~ebmlib.models.ClassifierEnergy`, as JEM (Grathwohl et al., 2020) does with WRN-28-10
    on CIFAR-10. The layers, for ``k = width`` and ``n = (depth - 4) / 6``:

    - a 3x3 convolution to 16 channels;
    - three stages of ``n`` pre-activation residual blocks with ``16k``, ``32k`` and ``64k``
      channels, the second and third halving the resolution (32x32 -> 32, 16, 8). A block
      computes :math:`x + \mathrm{conv}_2(\phi(\mathrm{conv}_1(\phi(x))))` with 3x3
      convolutions and :math:`\phi` the (normalisation and) activation; the first block of a
      stage strides its first convolution (as the paper does; JEM's code strides the second,
      same parameters, more work) and its skip path is a strided 1x1 convolution of
      :math:`x` where the channels or the resolution change;
    - the activation, a global average pool over the remaining ``H/4 x W/4`` positions and a
      linear layer to ``n_outputs`` logits.

    WRN-28-10 has 36.5M parameters. As in JEM there is **no batch norm** by default and no
    dropout: batch statistics make a sample's energy depend on the rest of its batch and
    change between training and evaluation mode, which SGLD cannot live with. Every
    convolution has a bias (standing in for the normalisation's shift).

    Any number of input channels and any image size work (the stages see 32x32, 16x16 and
    8x8 of a CIFAR image); the average pool makes the output size-independent. Only
    standard convolutions, element-wise activations and a mean are used, so the network
    runs in channels-last layout (``model.to(memory_format=torch.channels_last)``), the
    fastest with bf16 sampling on CPU (``benchmarks/README.md``).

    Parameters
    ----------
    depth : int
        Weight layers, ``6n + 4`` with ``n >= 1``: 10, 16, 22, 28 (JEM's), 34, 40, ...
    width : int
        Widening factor ``k``: the stages have ``16k``, ``32k`` and ``64k`` channels (JEM: 10).
    channels : int
        Input channels (3 for CIFAR-10).
    n_outputs : int
        Number of logits (10 classes for CIFAR-10).
    activation : {"leaky_relu", "swish"}
        :math:`\max(x, \alpha x)` with slope :math:`\alpha` = ``negative_slope`` (JEM's,
        :math:`\alpha = 0.2`), or the smooth :math:`x \sigma(x)` of :class:`Swish`.
    negative_slope : float
        The leaky ReLU's slope for negative inputs, in ``[0, 1)``; unused with ``"swish"``.
    norm : {None, "group", "batch"}
        Normalisation before each activation. ``None`` (the default, JEM's) has none;
        ``"group"`` is :class:`torch.nn.GroupNorm` with ``gcd(32, C)`` groups, which
        normalises each sample on its own, so energies stay per-sample functions;
        ``"batch"`` is :class:`torch.nn.BatchNorm2d`, the classifier WRN of the paper, for a
        plain classifier only (see above).
    spectral_norm : bool
        Divide every convolution's and the head's weight by its largest singular value
        (see :func:`spectrally_normalised`). Off by default.

    Raises
    ------
    ValueError
        For a depth that is not ``6n + 4`` (``n >= 1``), a non-positive width, channels or
        n_outputs, an unknown activation or norm, or a slope outside ``[0, 1)``.
    TypeError
        For a non-integer depth, width, channels or n_outputs.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import ClassifierEnergy
    >>> network = WideResNet(depth=10, width=1)
    >>> network(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> model = ClassifierEnergy(WideResNet(depth=10, width=1, activation="swish"), n_classes=10)
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2])
    >>> WideResNet(depth=27)
    Traceback (most recent call last):
    ...
    ValueError: depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, ...), got 27
    """

    def __init__(
        self,
        depth: int = 28,
        width: int = 10,
        channels: int = 3,
        n_outputs: int = 10,
        activation: str = "leaky_relu",
        negative_slope: float = 0.2,
        norm: str | None = None,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, numbers.Integral):
            raise TypeError(f"depth must be an integer 6n + 4 (10, 16, 22, 28, ...), got {depth!r} "
                            f"({type(depth).__name__})")
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, ...), got {depth}")
        check_count(width, "width")
        check_count(channels, "channels")
        check_count(n_outputs, "n_outputs")
        check_choice(activation, ACTIVATIONS, "activation")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        check_positive(negative_slope, "negative_slope", allow_zero=True)
        if negative_slope >= 1:
            raise ValueError(f"negative_slope must lie in [0, 1), got {negative_slope}")
        self.depth, self.width = int(depth), int(width)

        def layer(module: nn.Module) -> nn.Module:
            return spectrally_normalised(module, spectral_norm)

        def phi(n_channels: int) -> nn.Sequential:
            """The normalisation (if any), then the activation."""
            act = nn.LeakyReLU(negative_slope) if activation == "leaky_relu" else Swish()
            if norm == "group":
                return nn.Sequential(nn.GroupNorm(math.gcd(32, n_channels), n_channels), act)
            if norm == "batch":
                return nn.Sequential(nn.BatchNorm2d(n_channels), act)
            return nn.Sequential(act)

        blocks_per_stage = (depth - 4) // 6
        stage_channels = (16 * width, 32 * width, 64 * width)
        self.stem: nn.Module = layer(nn.Conv2d(channels, 16, 3, padding=1))
        stages: list[nn.Module] = []
        in_channels = 16
        for out_channels, stride in zip(stage_channels, (1, 2, 2), strict=True):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(_ResidualBlock(in_channels, out_channels, stride if i == 0 else 1, phi, layer))
                in_channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages: nn.Module = nn.Sequential(*stages)
        self.final: nn.Module = phi(in_channels)
        self.head: nn.Module = layer(nn.Linear(in_channels, n_outputs))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, n_outputs)`` of images ``(B, channels, H, W)``."""
        features = self.final(self.stages(self.stem(x)))
        return self.head(features.mean(dim=(2, 3)))


class _ResidualBlock(nn.Module):
    """A pre-activation block ``skip(x) + conv2(phi2(conv1(phi1(x))))``; ``conv1`` and ``skip`` carry the stride."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, phi: Callable[[int], nn.Module],
                 layer: Callable[[nn.Module], nn.Module]) -> None:
        super().__init__()
        self.phi1 = phi(in_channels)
        self.conv1 = layer(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1))
        self.phi2 = phi(out_channels)
        self.conv2 = layer(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        changes = stride != 1 or in_channels != out_channels
        self.skip = layer(nn.Conv2d(in_channels, out_channels, 1, stride=stride)) if changes else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.conv2(self.phi2(self.conv1(self.phi1(x))))
