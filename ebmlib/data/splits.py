"""A dataset's training, held-out and test splits, read in one call."""

from __future__ import annotations

import os
from typing import NamedTuple

from torch import Tensor

from .mnist import load_dataset


class SplitError(ValueError):
    """The data cannot be split as asked (say, a hold-out as large as the training set).

    Examples
    --------
    >>> from ebmlib.data import default_root
    >>> load_splits("mnist", default_root("mnist"), train_size=100, holdout=100)
    Traceback (most recent call last):
    ...
    ebmlib.data.splits.SplitError: a hold-out of 100 images leaves none of the 100 training images to train on: ...
    """


class DataSplits(NamedTuple):
    """Images ``(N, C, H, W)`` in ``[-1, 1]`` and labels ``(N,)`` of each split, as :func:`load_splits` returns them.

    Examples
    --------
    >>> import torch
    >>> images, labels = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)
    >>> splits = DataSplits(images, labels, images[:2], labels[:2], images[:1], labels[:1])
    >>> len(splits.train_images), len(splits.test_images), len(splits.holdout_images)
    (4, 2, 1)
    """

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    holdout_images: Tensor
    """The last ``holdout`` training images: not trained on (say, to fit a softmax temperature)."""
    holdout_labels: Tensor


def load_splits(
    name: str, root: str | os.PathLike[str], *, train_size: int | None = None, test_size: int | None = None,
    holdout: int = 0, download: bool = True,
) -> DataSplits:
    """The first ``train_size`` training images less the last ``holdout``, and the first ``test_size`` test images.

    Parameters
    ----------
    name, root, download
        As :func:`~ebmlib.data.mnist.load_dataset` takes them.
    train_size, test_size : int or None
        Use only the first so many images of each split (``None``: all).
    holdout : int
        Training images (the last of the first ``train_size``) set aside in
        ``holdout_images`` instead of ``train_images``.

    Raises
    ------
    SplitError
        When ``holdout`` is negative or leaves no training image, before anything is read.
    DatasetNotFoundError
        As :func:`~ebmlib.data.mnist.load_dataset` raises it.

    Examples
    --------
    >>> from ebmlib.data import default_root
    >>> splits = load_splits("mnist", default_root("mnist"), train_size=100, test_size=30, holdout=20)
    >>> splits.train_images.shape, splits.holdout_images.shape, splits.test_labels.shape
    (torch.Size([80, 1, 28, 28]), torch.Size([20, 1, 28, 28]), torch.Size([30]))
    """
    if holdout < 0 or (train_size is not None and holdout >= train_size):
        raise SplitError(f"a hold-out of {holdout} images leaves none of the {train_size} training images to train "
                         "on: hold out fewer (0 or more)")
    train_images, train_labels = load_dataset(name, root, train=True, download=download)
    test_images, test_labels = load_dataset(name, root, train=False, download=download)
    train_images, train_labels = train_images[:train_size], train_labels[:train_size]
    if holdout >= len(train_images):
        raise SplitError(f"a hold-out of {holdout} images leaves none of the {len(train_images)} training images to "
                         "train on: hold out fewer")
    split = len(train_images) - holdout
    return DataSplits(train_images[:split], train_labels[:split], test_images[:test_size], test_labels[:test_size],
                      train_images[split:], train_labels[split:])
