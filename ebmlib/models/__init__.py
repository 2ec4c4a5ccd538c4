"""Energy models: the interface, JEM's classifier energy and reference networks (a swish CNN, a Wide ResNet, an
MLP), and an Ising model for discrete samplers."""

from .base import EnergyModel, check_energy
from .classifier import ClassifierEnergy
from .ising import IsingEnergy
from .networks import MLP, NetworkEnergy, Swish, SwishCNN, spectrally_normalised
from .wide_resnet import WideResNet

__all__ = ["EnergyModel", "ClassifierEnergy", "NetworkEnergy", "SwishCNN", "MLP", "Swish", "spectrally_normalised",
           "check_energy", "WideResNet", "IsingEnergy"]
