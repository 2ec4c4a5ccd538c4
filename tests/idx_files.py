"""Tiny MNIST-like IDX files in torchvision's layouts (MNIST, FashionMNIST, KMNIST), for tests off the network."""

from __future__ import annotations

import struct
from pathlib import Path

import torch

from ebmlib.data import raw_folder


def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file: magic ``0x0000 08 <ndim>``, big-endian int32 sizes, raw bytes."""
    assert array.dtype == torch.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, array.dim()) + struct.pack(f">{array.dim()}i", *array.shape)
    path.write_bytes(header + array.contiguous().numpy().tobytes())


def fake_digits(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` 28x28 uint8 images whose class is drawn as a bright bar at a class-specific place, and labels."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = (torch.rand(n, 28, 28, generator=generator) * 40).to(torch.uint8)
    for i, label in enumerate(labels.tolist()):
        row = 3 + 2 * label
        images[i, row : row + 3, 4:24] = 255
    return images, labels.to(torch.uint8)


def write_dataset(root: Path, name: str = "mnist", n_train: int = 120, n_test: int = 60, seed: int = 0) -> Path:
    """Write ``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` for dataset ``name``
    (``MNIST``, ``FashionMNIST`` or ``KMNIST``, torchvision's folders); return ``root``."""
    raw = raw_folder(root, name)
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images, labels = fake_digits(n, seed if split == "train" else seed + 1)
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


def write_mnist(root: Path, n_train: int = 120, n_test: int = 60, seed: int = 0) -> Path:
    """Write ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``; return ``root``."""
    return write_dataset(root, "mnist", n_train, n_test, seed)
