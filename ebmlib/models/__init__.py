"""Energy models: the interface, JEM's classifier energy and reference networks."""

from .base import EnergyModel, check_energy
from .classifier import ClassifierEnergy
from .networks import MLP, NetworkEnergy, Swish, SwishCNN, spectrally_normalised

__all__ = ["EnergyModel", "ClassifierEnergy", "NetworkEnergy", "SwishCNN", "MLP", "Swish", "spectrally_normalised",
           "check_energy"]
