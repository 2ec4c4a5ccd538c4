"""Tiny CIFAR-10 batches in torchvision's layout (``<root>/cifar-10-batches-py/``), for tests off the network."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from ebmlib.data import CIFAR10_FILES, raw_folder


def fake_colour_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uint8 images ``(n, 3, 32, 32)`` and labels: faint noise, with a bright square in the red plane at a
    class-specific row, the green plane at a constant 100 and the blue plane at 200 (so the channel order shows)."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) + seed) % 10
    images = (torch.rand(n, 3, 32, 32, generator=generator) * 40).to(torch.uint8)
    images[:, 1], images[:, 2] = 100, 200
    for i, label in enumerate(labels.tolist()):
        images[i, 0, 3 * label : 3 * label + 3, 4:28] = 255
    return images, labels


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did (protocol 2): every string, text or bytes, as a byte string (``U``/``T``
    opcodes), which Python 3 reads back as ``bytes`` with ``encoding="bytes"``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_byte_string(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_byte_string
    dispatch[str] = save_byte_string


def python2_pickle(obj: object) -> bytes:
    """``obj`` pickled as CIFAR-10's files were: by Python 2 and numpy 1 (``numpy.core.multiarray._reconstruct``)."""
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n_reconstruct\n",
                                     b"cnumpy.core.multiarray\n_reconstruct\n")


def write_batch(path: Path, images: torch.Tensor, labels: torch.Tensor, name: str = "batch") -> None:
    """Write one batch as CIFAR-10's python version holds it: a dict whose ``"data"`` holds the ``N x 3072`` uint8
    rows (red, green, blue planes) and ``"labels"`` a list of ints, pickled by :func:`python2_pickle` (so its keys
    read back as ``b"data"``, ``b"labels"``)."""
    entry = {
        "batch_label": name,
        "labels": [int(label) for label in labels],
        "data": np.ascontiguousarray(images.reshape(len(images), 3072).numpy()),
        "filenames": [f"image_{i}.png" for i in range(len(images))],
    }
    path.write_bytes(python2_pickle(entry))


def write_cifar10(root: Path, n_per_train_batch: int = 6, n_test: int = 8, seed: int = 0) -> Path:
    """Write ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}``: training batch ``i`` holds
    ``fake_colour_images(n_per_train_batch, seed + i)``, the test batch ``fake_colour_images(n_test, seed + 10)``;
    return ``root``."""
    folder = raw_folder(root, "cifar10")
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(CIFAR10_FILES):
        images, labels = (fake_colour_images(n_per_train_batch, seed + i) if name != "test_batch"
                          else fake_colour_images(n_test, seed + 10))
        write_batch(folder / name, images, labels, name)
    return root


def expected_split(train: bool, n_per_train_batch: int = 6, n_test: int = 8, seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The uint8 images and labels :func:`write_cifar10` wrote for a split, in file order."""
    if not train:
        return fake_colour_images(n_test, seed + 10)
    parts = [fake_colour_images(n_per_train_batch, seed + i) for i in range(5)]
    return torch.cat([images for images, _ in parts]), torch.cat([labels for _, labels in parts])
