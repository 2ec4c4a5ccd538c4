"""Small energy models with known answers, shared by the tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ebmlib.models import ClassifierEnergy, EnergyModel


class GaussianEnergy(EnergyModel):
    """E(x) = 0.5 * sum((x - mean)^2 / variance): the target is N(mean, diag(variance))."""

    def __init__(self, mean: Tensor, variance: Tensor) -> None:
        super().__init__()
        self.mean = nn.Parameter(mean.clone())
        self.register_buffer("variance", variance.clone())

    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return 0.5 * ((x - self.mean) ** 2 / self.variance).flatten(1).sum(1)


def gaussian_2d() -> GaussianEnergy:
    return GaussianEnergy(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0]))


def tiny_classifier(event_shape: tuple[int, ...] = (1, 4, 4), n_classes: int = 3, seed: int = 0) -> ClassifierEnergy:
    torch.manual_seed(seed)
    features = int(torch.tensor(event_shape).prod())
    network = nn.Sequential(nn.Flatten(), nn.Linear(features, 16), nn.SiLU(), nn.Linear(16, n_classes))
    return ClassifierEnergy(network, n_classes)
