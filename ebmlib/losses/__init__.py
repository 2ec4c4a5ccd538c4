"""Losses: contrastive divergence, energy regularisation, cross-entropy, score matching (denoising, sliced),
noise-contrastive estimation, the KL term of improved CD, conditional flow matching, and their weighted sum."""

from .base import Classification, ConditionalEnergies, Energies, EnergyBatch, Loss, LossInput
from .contrastive_divergence import ContrastiveDivergence
from .cross_entropy import CrossEntropy
from .denoising_score_matching import DenoisingScoreMatching, NoisyScores
from .energy_regularization import EnergyRegularization
from .equilibrium_matching import EquilibriumMatching, InterpolatedGradients
from .flow_matching import FlowMatching, FlowVelocities, linear_paths, ot_pairing
from .noise_contrastive import NoiseContrast, NoiseContrastiveEstimation
from .sampler_kl import SamplerEnergies, SamplerKL
from .sliced_score_matching import SlicedScoreMatching, SlicedScores
from .weighted_sum import WeightedSum

__all__ = [
    "Loss", "EnergyBatch", "LossInput", "Energies", "ConditionalEnergies", "Classification",
    "ContrastiveDivergence", "EnergyRegularization", "CrossEntropy", "WeightedSum",
    "DenoisingScoreMatching", "NoisyScores", "SlicedScoreMatching", "SlicedScores",
    "NoiseContrastiveEstimation", "NoiseContrast", "SamplerKL", "SamplerEnergies",
    "FlowMatching", "FlowVelocities", "linear_paths", "ot_pairing",
    "EquilibriumMatching", "InterpolatedGradients"]
