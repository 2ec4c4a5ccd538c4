"""MNIST, Fashion-MNIST and KMNIST as in-memory tensors scaled to [-1, 1]; downloads through torchvision.

The three share one layout: 28x28 grayscale images in ten classes, stored by
torchvision as four IDX files in ``<root>/<folder>/raw/`` (``MNIST``,
``FashionMNIST`` or ``KMNIST``), uncompressed or gzipped (``.gz``).
ebmlib ships 10,000-image subsets of MNIST and Fashion-MNIST in that layout
under :data:`SUBSETS_ROOT`, so that they load offline. :func:`load_dataset` also reads
CIFAR-10 (``"cifar10"``), through :mod:`ebmlib.data.cifar`.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

DATASETS: dict[str, str] = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
"""Dataset name -> its torchvision class, which is also its folder under the data root."""

DATASET_NAMES: tuple[str, ...] = (*DATASETS, "cifar10")
"""Every name :func:`load_dataset` accepts: the MNIST family of :data:`DATASETS` and ``"cifar10"``
(CIFAR-10, read by :func:`~ebmlib.data.cifar.load_cifar10` from ``<root>/cifar-10-batches-py``)."""

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The uncompressed IDX files torchvision expects in ``<root>/<folder>/raw/``, the same for every dataset."""


SUBSETS_ROOT = Path(__file__).parent / "subsets"
"""The data root of the subsets shipped with ebmlib (``<root>/MNIST/raw``, ``<root>/FashionMNIST/raw``, gzipped IDX):
8,000 training and 2,000 test images of MNIST and of Fashion-MNIST, drawn per class at random (seed 0); sources
and licences (MIT) in its ``README.md``. ``load_dataset("mnist", SUBSETS_ROOT)`` reads them without a network."""

SUBSETS = ("mnist", "fashion-mnist")
"""The datasets with a subset under :data:`SUBSETS_ROOT`."""


def default_root(name: str) -> Path:
    """Where dataset ``name`` is read from when no folder is given: :data:`SUBSETS_ROOT` for the datasets
    shipped with ebmlib (:data:`SUBSETS`), ``./data`` (downloaded there) for the others.

    Examples
    --------
    >>> default_root("mnist") == SUBSETS_ROOT, default_root("kmnist").as_posix()
    (True, 'data')
    """
    _check_name(name)
    return SUBSETS_ROOT if name in SUBSETS else Path("data")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are absent (and could not be downloaded) or unreadable.

    Examples
    --------
    >>> try:
    ...     load_dataset("kmnist", "no/such/folder", download=False)
    ... except DatasetNotFoundError as error:
    ...     print(isinstance(error, FileNotFoundError))
    True
    """


MNISTNotFoundError = DatasetNotFoundError
"""The former name of :class:`DatasetNotFoundError`, kept so that ``except MNISTNotFoundError`` still works."""


def raw_folder(root: str | os.PathLike[str], name: str = "mnist") -> Path:
    """``<root>/<folder>/raw``, where torchvision keeps dataset ``name``'s IDX files
    (for ``"cifar10"``, ``<root>/cifar-10-batches-py``, where it keeps CIFAR-10's batches).

    Parameters
    ----------
    root : path-like
    name : {"mnist", "fashion-mnist", "kmnist", "cifar10"}

    Examples
    --------
    >>> raw_folder("data", "fashion-mnist").as_posix(), raw_folder("data", "cifar10").as_posix()
    ('data/FashionMNIST/raw', 'data/cifar-10-batches-py')
    """
    if name == "cifar10":
        return Path(root) / _cifar().FOLDER
    return Path(root) / _folder(name) / "raw"


def mnist_raw_folder(root: str | os.PathLike[str]) -> Path:
    """``<root>/MNIST/raw``: :func:`raw_folder` for MNIST.

    Examples
    --------
    >>> mnist_raw_folder("data").as_posix()
    'data/MNIST/raw'
    """
    return raw_folder(root, "mnist")


def class_names(name: str) -> list[str]:
    """The ten class names of dataset ``name``, in label order (torchvision's).

    Examples
    --------
    >>> class_names("fashion-mnist")[:3], class_names("cifar10")[:2]
    (['T-shirt/top', 'Trouser', 'Pullover'], ['airplane', 'automobile'])
    """
    if name == "cifar10":
        return list(_cifar().CLASSES)
    return list(_dataset_class(name).classes)


def download_dataset(name: str, root: str | os.PathLike[str] = "data") -> Path:
    """Make sure dataset ``name``'s four IDX files are in ``<root>/<folder>/raw``, downloading them if absent
    (CIFAR-10's six batches in ``<root>/cifar-10-batches-py``: :func:`~ebmlib.data.cifar.download_cifar10`).

    With several processes, call it on process 0 alone, wait at a barrier, then
    call :func:`load_dataset` with ``download=False`` everywhere: the files are
    fetched once and no process reads a half-written file.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "kmnist", "cifar10"}
    root : path-like

    Returns
    -------
    Path
        The raw folder holding the files.

    Raises
    ------
    DatasetNotFoundError
        When files are missing and the download fails (say, offline); the message
        names the folder, the missing files and how to provide them.

    Examples
    --------
    Under ``torchrun``, download on process 0 while the others wait:

    >>> import torch.distributed as dist
    >>> if dist.is_initialized() and dist.get_rank() == 0:  # doctest: +SKIP
    ...     download_dataset("fashion-mnist", "data")
    >>> if dist.is_initialized():  # doctest: +SKIP
    ...     dist.barrier()
    >>> download_dataset("cifar100", "data")
    Traceback (most recent call last):
    ...
    ValueError: unknown dataset 'cifar100'; expected one of ['cifar10', 'fashion-mnist', 'kmnist', 'mnist']
    """
    if name == "cifar10":
        return _cifar().download_cifar10(root)
    raw = raw_folder(root, name)
    missing = _missing(raw)
    if missing:
        run_download(lambda: _dataset_class(name)(str(root), train=True, download=True),
                     lambda reason: _not_found_message(name, raw, missing, reason))
    return raw


def run_download(download: Callable[[], object], not_found: Callable[[str], str]) -> None:
    """Call ``download`` (a torchvision download); when it fails (say, offline), raise a
    :class:`DatasetNotFoundError` with the message ``not_found(reason)``, the reason naming the error."""
    try:
        download()
    except (RuntimeError, OSError) as error:
        reason = f"the download failed: {type(error).__name__}: {' '.join(str(error).split())[:300]}"
        raise DatasetNotFoundError(not_found(reason)) from error


def load_dataset(
    name: str, root: str | os.PathLike[str] = "data", train: bool = True, download: bool = True
) -> tuple[Tensor, Tensor]:
    r"""The training or test split of MNIST, Fashion-MNIST, KMNIST or CIFAR-10 as tensors, pixels in :math:`[-1, 1]`.

    Reads ``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
    (torchvision's layout, uncompressed IDX; ``<folder>`` from :data:`DATASETS`)
    with the torchvision dataset class; when files are absent and ``download``
    is true, :func:`download_dataset` fetches them first. Pixel values
    :math:`v \in \{0..255\}` become :math:`2v/255 - 1`. For ``"cifar10"`` it returns
    :func:`~ebmlib.data.cifar.load_cifar10` ``(root, train, download)``: colour images
    ``(N, 3, 32, 32)`` read from ``<root>/cifar-10-batches-py``, scaled the same way.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "kmnist", "cifar10"}
    root : path-like
        Folder holding ``<folder>/raw/`` (default ``./data``).
    train : bool
        The training split (``train-*``) or the test split (``t10k-*``).
    download : bool
        Download the files when they are absent. With several processes, pass
        ``False`` and call :func:`download_dataset` on one process first.

    Returns
    -------
    images : Tensor of float32, shape ``(N, 1, 28, 28)`` (CIFAR-10: ``(N, 3, 32, 32)``), values in ``[-1, 1]``
    labels : Tensor of int64, shape ``(N,)``, values in ``0..9``

    Raises
    ------
    DatasetNotFoundError
        Before any work, when the files are absent and can't be downloaded (say,
        offline) or can't be read; the message names the folder it looked in,
        the missing files and how to provide them.
    ValueError
        For a name not in :data:`DATASET_NAMES`.

    Examples
    --------
    >>> load_dataset("fashion-mnist", "no/such/folder", download=False)
    Traceback (most recent call last):
    ...
    ebmlib.data.mnist.DatasetNotFoundError: FashionMNIST files not found in no/such/folder/FashionMNIST/raw ...
    """
    if name == "cifar10":
        return _cifar().load_cifar10(root, train, download)
    raw = raw_folder(root, name)
    missing = _missing(raw)
    if missing and not download:
        raise DatasetNotFoundError(_not_found_message(name, raw, missing, "downloading is off (download=False)"))
    if missing:
        download_dataset(name, root)
    split = "train" if train else "t10k"
    try:
        images = _read_idx(raw / f"{split}-images-idx3-ubyte", ndim=3)
        labels = _read_idx(raw / f"{split}-labels-idx1-ubyte", ndim=1)
        if images.shape[1:] != (28, 28) or len(labels) != len(images):
            raise ValueError(f"images of shape {tuple(images.shape)} for {len(labels)} labels")
    except (OSError, EOFError, ValueError, RuntimeError) as error:
        raise DatasetNotFoundError(
            f"could not read the {DATASETS[name]} {split} files in {raw} ({type(error).__name__}: {error}); they must "
            f"be IDX files {split}-images-idx3-ubyte (uint8, N x 28 x 28) and {split}-labels-idx1-ubyte, "
            "uncompressed or gzipped (.gz)"
        ) from error
    return images.unsqueeze(1).float().div(255.0).mul(2.0).sub(1.0), labels.long()


def load_mnist(
    root: str | os.PathLike[str] = "data", train: bool = True, download: bool = True
) -> tuple[Tensor, Tensor]:
    """:func:`load_dataset` ``("mnist", root, train, download)``: MNIST from ``<root>/MNIST/raw``.

    Examples
    --------
    >>> load_mnist("no/such/folder", download=False)
    Traceback (most recent call last):
    ...
    ebmlib.data.mnist.DatasetNotFoundError: MNIST files not found in no/such/folder/MNIST/raw ...
    """
    return load_dataset("mnist", root, train, download)


def _check_name(name: str) -> None:
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASET_NAMES)}")


def _folder(name: str) -> str:
    _check_name(name)
    if name not in DATASETS:
        raise ValueError(f"{name!r} is not stored as IDX files; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def _cifar() -> Any:
    """:mod:`ebmlib.data.cifar`, imported on first use (it imports :class:`DatasetNotFoundError` from here)."""
    from . import cifar

    return cifar


def _dataset_class(name: str) -> Any:
    folder = _folder(name)
    try:
        from torchvision import datasets
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError(f'loading {name} needs torchvision: pip install "ebmlib[vision]"') from error
    return getattr(datasets, folder)


def _missing(raw: Path) -> list[str]:
    return [file for file in MNIST_FILES if not _stored(raw / file).is_file()]


def _stored(path: Path) -> Path:
    """``path``, or its gzipped ``path.gz`` when only that exists."""
    gzipped = path.with_name(path.name + ".gz")
    return gzipped if not path.is_file() and gzipped.is_file() else path


def _read_idx(path: Path, ndim: int) -> Tensor:
    """An IDX file of unsigned bytes (uncompressed, or ``path.gz``) as a uint8 tensor of ``ndim`` dimensions."""
    path = _stored(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
        data = file.read()
    if len(data) < 4 + 4 * ndim or data[:4] != bytes([0, 0, 8, ndim]):
        raise ValueError(f"{path.name} is not an IDX file of unsigned bytes with {ndim} dimensions")
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = data[4 + 4 * ndim:]
    if len(body) != torch.Size(shape).numel():
        raise ValueError(f"{path.name} holds {len(body)} bytes of data, its header promises shape {shape}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def _not_found_message(name: str, raw: Path, missing: list[str], reason: str) -> str:
    folder = DATASETS[name]
    return (
        f"{folder} files not found in {raw} (absolute: {raw.resolve()}); missing {', '.join(missing)}, and {reason}. "
        f"Provide the four uncompressed IDX files {', '.join(MNIST_FILES)} in <dir>/{folder}/raw/ and point the "
        f"data folder at <dir> (root=<dir>; in a script with a --data-dir option: --data-dir <dir>), "
        "or run once with internet access to download them."
    )
