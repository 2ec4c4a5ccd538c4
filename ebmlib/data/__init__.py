"""Data: 2D toy distributions and MNIST (through torchvision, loaded lazily)."""

from .mnist import MNIST_FILES, MNISTNotFoundError, load_mnist, mnist_raw_folder
from .toy import TOY_DISTRIBUTIONS, checkerboard, eight_gaussians, rings, sample_toy, two_moons

__all__ = [
    "TOY_DISTRIBUTIONS", "sample_toy", "eight_gaussians", "two_moons", "rings", "checkerboard",
    "load_mnist", "mnist_raw_folder", "MNIST_FILES", "MNISTNotFoundError",
]
