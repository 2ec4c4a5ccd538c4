"""ebmlib: pluggable energy-based models for PyTorch.

An energy-based model is composed of three interchangeable kinds of part:

- an energy model (:mod:`ebmlib.models`), ``x -> E(x)`` of shape ``(B,)``;
- a sampler (:mod:`ebmlib.samplers`), optionally continuing persistent chains
  from a replay buffer (:mod:`ebmlib.buffers`);
- a loss (:mod:`ebmlib.losses`) over one shared forward pass.

Recipes (:mod:`ebmlib.recipes`) are built only from those parts: persistent and short-run
contrastive divergence, JEM, score matching, NCE, improved CD, energy matching and
equilibrium matching.
"""

from . import buffers, checkpoint, data, evaluation, losses, models, recipes, samplers, training
from .buffers import ClassGaussianInit, GaussianInit, ReplayBuffer, UniformInit
from .losses import ContrastiveDivergence, CrossEntropy, EnergyBatch, EnergyRegularization, Loss, WeightedSum
from .models import ClassifierEnergy, EnergyModel, NetworkEnergy
from .recipes import EBM, JEM, jem_loss
from .samplers import (
    DMALA,
    HMC,
    MALA,
    NUTS,
    AnnealedLangevin,
    Gibbs,
    GibbsWithGradients,
    GradientDescent,
    Langevin,
    ParallelTempering,
    Sampler,
    UnderdampedLangevin,
)
from .training import Trainer

__version__ = "0.1.0"

__all__ = [
    "EnergyModel", "ClassifierEnergy", "NetworkEnergy",
    "Sampler", "Langevin", "MALA", "HMC", "AnnealedLangevin", "UnderdampedLangevin", "ParallelTempering", "NUTS",
    "Gibbs", "GibbsWithGradients", "DMALA", "GradientDescent",
    "ReplayBuffer", "UniformInit", "GaussianInit", "ClassGaussianInit",
    "Loss", "EnergyBatch", "ContrastiveDivergence", "EnergyRegularization", "CrossEntropy", "WeightedSum",
    "EBM", "JEM", "jem_loss", "Trainer",
    "models", "samplers", "buffers", "losses", "recipes", "data", "evaluation", "training", "checkpoint",
]
