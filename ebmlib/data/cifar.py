"""CIFAR-10 as in-memory tensors scaled to [-1, 1]; downloads through torchvision.

CIFAR-10 (Krizhevsky, 2009) holds 60,000 32x32 colour images in ten classes, 50,000 for
training and 10,000 for testing. torchvision stores its "python version" in
``<root>/cifar-10-batches-py/``: five training batches ``data_batch_1`` .. ``data_batch_5``
and ``test_batch``, each a pickled dictionary whose ``b"data"`` is an ``N x 3072`` uint8
array (the red, green and blue 32x32 planes of each image in turn) and ``b"labels"`` a list
of ``N`` labels in ``0..9``. :func:`~ebmlib.data.mnist.load_dataset` ``("cifar10", root)`` reads
them with :func:`load_cifar10`.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .mnist import DatasetNotFoundError, run_download

FOLDER = "cifar-10-batches-py"
"""torchvision's folder for CIFAR-10 under the data root."""

CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
"""The pickled batches torchvision keeps in ``<root>/cifar-10-batches-py/``: five of 10,000 training images, then
the 10,000 test images."""

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
"""CIFAR-10's class names, in label order (its ``batches.meta``)."""

_NUMPY_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,  # files written by numpy 1 (the real ones)
    ("numpy._core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,  # files written by numpy 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes in a protocol-2 pickle written by Python 3
}
"""What a CIFAR batch may name: a pickle that names anything else (a function to call) is refused unread."""


def download_cifar10(root: str | os.PathLike[str] = "data") -> Path:
    """Make sure CIFAR-10's six batches are in ``<root>/cifar-10-batches-py``, downloading them if absent.

    torchvision fetches and checks ``cifar-10-python.tar.gz`` (163 MB) into ``root`` and
    unpacks it there. With several processes, call it on process 0 alone, wait at a
    barrier, then call :func:`load_cifar10` with ``download=False`` everywhere (what
    :func:`~ebmlib.data.mnist.download_dataset` ``("cifar10", root)`` does is this call).

    Parameters
    ----------
    root : path-like

    Returns
    -------
    Path
        The folder holding the batches, ``<root>/cifar-10-batches-py``.

    Raises
    ------
    DatasetNotFoundError
        When files are missing and the download fails (say, offline); the message
        names the folder, the missing files and how to provide them.

    Examples
    --------
    >>> from ebmlib.data import raw_folder
    >>> raw_folder("data", "cifar10").as_posix()  # where download_cifar10("data") puts the batches
    'data/cifar-10-batches-py'
    >>> download_cifar10("data")  # doctest: +SKIP
    PosixPath('data/cifar-10-batches-py')
    """
    folder = Path(root) / FOLDER
    missing = _missing(folder)
    if missing:
        try:
            from torchvision import datasets
        except ImportError as error:  # pragma: no cover - depends on the installation
            raise ImportError('downloading cifar10 needs torchvision: pip install "ebmlib[vision]"') from error
        run_download(lambda: datasets.CIFAR10(str(root), train=True, download=True),
                     lambda reason: _not_found_message(folder, missing, reason))
    return folder


def load_cifar10(
    root: str | os.PathLike[str] = "data", train: bool = True, download: bool = True
) -> tuple[Tensor, Tensor]:
    r"""The training or test split of CIFAR-10 as tensors, pixels scaled to :math:`[-1, 1]`.

    Reads ``<root>/cifar-10-batches-py/data_batch_1`` .. ``data_batch_5`` (training, in
    that order) or ``test_batch`` (torchvision's layout); when files are absent and
    ``download`` is true, :func:`download_cifar10` fetches them first. Pixel values
    :math:`v \in \{0..255\}` become :math:`2v/255 - 1`, as
    :func:`~ebmlib.data.mnist.load_dataset` does for MNIST. The batches are unpickled by an
    unpickler that allows only numpy arrays, lists, numbers and strings, so a file that
    would run code when loaded is refused. :func:`~ebmlib.data.mnist.load_dataset`
    ``("cifar10", root, train, download)`` calls this function.

    Parameters
    ----------
    root : path-like
        Folder holding ``cifar-10-batches-py/`` (default ``./data``).
    train : bool
        The training split (50,000 images) or the test split (10,000).
    download : bool
        Download the files when they are absent. With several processes, pass
        ``False`` and call :func:`download_cifar10` on one process first.

    Returns
    -------
    images : Tensor of float32, shape ``(N, 3, 32, 32)``, values in ``[-1, 1]``
        Channels red, green, blue.
    labels : Tensor of int64, shape ``(N,)``, values in ``0..9``
        Class names in :func:`~ebmlib.data.mnist.class_names` ``("cifar10")``.

    Raises
    ------
    DatasetNotFoundError
        Before any work, when the files are absent and can't be downloaded (say,
        offline) or can't be read; the message names the folder it looked in, the
        missing files and how to provide them.

    Examples
    --------
    >>> load_cifar10("no/such/folder", download=False)
    Traceback (most recent call last):
    ...
    ebmlib.data.mnist.DatasetNotFoundError: CIFAR10 files not found in no/such/folder/cifar-10-batches-py ...
    """
    folder = Path(root) / FOLDER
    missing = _missing(folder)
    if missing and not download:
        raise DatasetNotFoundError(_not_found_message(folder, missing, "downloading is off (download=False)"))
    if missing:
        download_cifar10(root)
    split = "train" if train else "test"
    names = CIFAR10_FILES[:5] if train else CIFAR10_FILES[5:]
    try:
        batches = [_read_batch(folder / name) for name in names]
    except (OSError, EOFError, ValueError, TypeError, KeyError, pickle.UnpicklingError) as error:
        raise DatasetNotFoundError(
            f"could not read the CIFAR10 {split} files in {folder} ({type(error).__name__}: {error}); they must be "
            f"the pickled batches {', '.join(names)} of CIFAR-10's python version, each a dict with b'data' "
            "(uint8, N x 3072) and b'labels' (N labels in 0..9)"
        ) from error
    images = torch.from_numpy(np.concatenate([data for data, _ in batches])).reshape(-1, 3, 32, 32)
    labels = torch.cat([labels for _, labels in batches])
    return images.float().div_(255.0).mul_(2.0).sub_(1.0), labels


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of :data:`_ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"a CIFAR batch holds numpy arrays and lists only, this file names "
                                         f"{module}.{name}: refused")
        return _ALLOWED_GLOBALS[module, name]


def _read_batch(path: Path) -> tuple[np.ndarray, Tensor]:
    """The ``(N, 3072)`` uint8 pixels and the ``(N,)`` int64 labels of one pickled batch."""
    with open(path, "rb") as file:
        entry = _BatchUnpickler(io.BytesIO(file.read()), encoding="bytes").load()
    if not isinstance(entry, dict):
        raise ValueError(f"{path.name} holds a {type(entry).__name__}, not a dict")
    entry = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in entry.items()}
    data, labels = entry["data"], entry["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path.name}: data must be a uint8 array of shape (N, 3072), got a {got}")
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if tuple(labels.shape) != (len(data),):
        raise ValueError(f"{path.name}: {len(data)} images but labels of shape {tuple(labels.shape)}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) > 9):
        raise ValueError(f"{path.name}: labels must lie in 0..9, got values in [{int(labels.min())}, "
                         f"{int(labels.max())}]")
    return data, labels


def _missing(folder: Path) -> list[str]:
    return [name for name in CIFAR10_FILES if not (folder / name).is_file()]


def _not_found_message(folder: Path, missing: list[str], reason: str) -> str:
    return (
        f"CIFAR10 files not found in {folder} (absolute: {folder.resolve()}); missing {', '.join(missing)}, and "
        f"{reason}. Provide the six files {', '.join(CIFAR10_FILES)} of CIFAR-10's python version "
        "(cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, unpacked) in "
        f"<dir>/{FOLDER}/ and point the data folder at <dir> (root=<dir>; in a script with a --data-dir option: "
        "--data-dir <dir>), or run once with internet access to download them."
    )
