"""Losses: contrastive divergence, energy regularisation, cross-entropy, and their weighted sum."""

from .base import Classification, ConditionalEnergies, Energies, EnergyBatch, Loss, LossInput
from .contrastive_divergence import ContrastiveDivergence
from .cross_entropy import CrossEntropy
from .energy_regularization import EnergyRegularization
from .weighted_sum import WeightedSum

__all__ = [
    "Loss", "EnergyBatch", "LossInput", "Energies", "ConditionalEnergies", "Classification",
    "ContrastiveDivergence", "EnergyRegularization", "CrossEntropy", "WeightedSum"]
