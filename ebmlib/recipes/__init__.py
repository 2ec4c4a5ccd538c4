"""Recipes: training procedures assembled only from models, samplers, buffers and losses."""

from .base import Recipe
from .contrastive import ContrastiveRecipe
from .ebm import EBM
from .energy_matching import EnergyMatchingEBM, energy_matching_loss
from .equilibrium_matching import EquilibriumMatchingEBM
from .improved_contrastive import ImprovedContrastiveEBM
from .jem import JEM, jem_loss
from .noise_contrastive import GaussianNoise, NoiseContrastiveEBM
from .score_matching import ScoreMatchingEBM
from .short_run import ShortRunEBM

__all__ = ["Recipe", "ContrastiveRecipe", "EBM", "ShortRunEBM", "JEM", "jem_loss",
           "ScoreMatchingEBM", "NoiseContrastiveEBM", "GaussianNoise", "ImprovedContrastiveEBM",
           "EnergyMatchingEBM", "energy_matching_loss", "EquilibriumMatchingEBM"]
