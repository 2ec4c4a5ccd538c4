"""Data: 2D toy distributions and the MNIST family (MNIST, Fashion-MNIST, KMNIST), with offline subsets of two;
CIFAR-10."""

from .cifar import CIFAR10_FILES, download_cifar10, load_cifar10
from .mnist import (
    DATASET_NAMES,
    DATASETS,
    MNIST_FILES,
    SUBSETS,
    SUBSETS_ROOT,
    DatasetNotFoundError,
    MNISTNotFoundError,
    class_names,
    default_root,
    download_dataset,
    load_dataset,
    load_mnist,
    mnist_raw_folder,
    raw_folder,
)
from .splits import DataSplits, SplitError, load_splits
from .toy import TOY_DISTRIBUTIONS, checkerboard, eight_gaussians, rings, sample_toy, two_moons

__all__ = [
    "TOY_DISTRIBUTIONS", "sample_toy", "eight_gaussians", "two_moons", "rings", "checkerboard",
    "DATASETS", "load_dataset", "download_dataset", "raw_folder", "class_names", "DatasetNotFoundError",
    "load_mnist", "mnist_raw_folder", "MNIST_FILES", "MNISTNotFoundError", "SUBSETS", "SUBSETS_ROOT", "default_root",
    "load_splits", "DataSplits", "SplitError",
    "DATASET_NAMES", "load_cifar10", "download_cifar10", "CIFAR10_FILES",
]
