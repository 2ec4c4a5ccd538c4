"""MNIST through torchvision, as in-memory tensors scaled to [-1, 1]."""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The uncompressed IDX files torchvision expects in ``<root>/MNIST/raw/``."""


class MNISTNotFoundError(FileNotFoundError):
    """The MNIST files are absent (and could not be downloaded) or unreadable.

    Examples
    --------
    >>> try:
    ...     load_mnist("no/such/folder", download=False)
    ... except MNISTNotFoundError as error:
    ...     print(isinstance(error, FileNotFoundError))
    True
    """


def mnist_raw_folder(root: str | os.PathLike[str]) -> Path:
    """``<root>/MNIST/raw``, where torchvision keeps the IDX files.

    Examples
    --------
    >>> mnist_raw_folder("data").as_posix()
    'data/MNIST/raw'
    """
    return Path(root) / "MNIST" / "raw"


def load_mnist(
    root: str | os.PathLike[str] = "data", train: bool = True, download: bool = True
) -> tuple[Tensor, Tensor]:
    r"""The MNIST training or test split as tensors, pixels scaled to :math:`[-1, 1]`.

    Reads ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
    (torchvision's layout, uncompressed IDX) with
    :class:`torchvision.datasets.MNIST`; when they are absent and ``download``
    is true, torchvision downloads them there first. Pixel values
    :math:`v \in \{0..255\}` become :math:`2v/255 - 1`.

    Parameters
    ----------
    root : path-like
        Folder holding ``MNIST/raw/`` (default ``./data``).
    train : bool
        The training split (``train-*``) or the test split (``t10k-*``).
    download : bool
        Download the files when they are absent.

    Returns
    -------
    images : Tensor of float32, shape ``(N, 1, 28, 28)``, values in ``[-1, 1]``
    labels : Tensor of int64, shape ``(N,)``, values in ``0..9``

    Raises
    ------
    MNISTNotFoundError
        Before any work, when the files are absent and can't be downloaded (say,
        offline) or can't be read; the message names the folder it looked in and
        how to provide the files.

    Examples
    --------
    >>> load_mnist("no/such/folder", download=False)
    Traceback (most recent call last):
    ...
    ebmlib.data.mnist.MNISTNotFoundError: MNIST files not found in no/such/folder/MNIST/raw ...
    """
    try:
        from torchvision.datasets import MNIST
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError('load_mnist needs torchvision: pip install "ebmlib[vision]"') from error
    raw = mnist_raw_folder(root)
    missing = [name for name in MNIST_FILES if not (raw / name).is_file()]
    if missing:
        if not download:
            raise MNISTNotFoundError(_not_found_message(raw, missing, "downloading is off (download=False)"))
        try:
            MNIST(str(root), train=train, download=True)
        except (RuntimeError, OSError) as error:
            reason = f"the download failed: {type(error).__name__}: {' '.join(str(error).split())[:300]}"
            raise MNISTNotFoundError(_not_found_message(raw, missing, reason)) from error
    try:
        dataset = MNIST(str(root), train=train, download=False)
    except (RuntimeError, AssertionError, ValueError, TypeError) as error:
        split = "train" if train else "t10k"
        raise MNISTNotFoundError(
            f"could not read the MNIST {split} files in {raw} ({type(error).__name__}: {error}); they must be "
            f"uncompressed IDX files {split}-images-idx3-ubyte (uint8, N x 28 x 28) and {split}-labels-idx1-ubyte"
        ) from error
    images = dataset.data.unsqueeze(1).float().div(255.0).mul(2.0).sub(1.0)
    return images, dataset.targets.long()


def _not_found_message(raw: Path, missing: list[str], reason: str) -> str:
    return (
        f"MNIST files not found in {raw} (absolute: {raw.resolve()}); missing {', '.join(missing)}, and {reason}. "
        f"Provide the four uncompressed IDX files {', '.join(MNIST_FILES)} in <dir>/MNIST/raw/ and point the "
        "data folder at <dir> (examples/mnist_jem.py: --data-dir <dir>, e.g. --data-dir ../shared/data/mnist-10k), "
        "or run once with internet access to download them."
    )
