"""Sample quality judged by an independent classifier: Frechet distance of its features and class recognition."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .classification import batched


def frechet_distance(features_a: Tensor, features_b: Tensor) -> Tensor:
    r"""Frechet distance between Gaussians fitted to two sets of feature vectors.

    .. math::

        d^2 = \lVert \mu_a - \mu_b \rVert^2
            + \operatorname{Tr}\big(\Sigma_a + \Sigma_b - 2 (\Sigma_a \Sigma_b)^{1/2}\big),

    computed in float64 with :math:`\operatorname{Tr}(\Sigma_a\Sigma_b)^{1/2}` as the sum of
    the square roots of the eigenvalues of :math:`\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2}`.
    With Inception features this is the FID; here the features come from
    :class:`FeatureClassifier`.

    Parameters
    ----------
    features_a : Tensor, shape ``(N, D)``
    features_b : Tensor, shape ``(M, D)``
        ``N, M >= 2``.

    Returns
    -------
    Tensor
        Non-negative scalar (float64); 0 for identical sets.

    Examples
    --------
    >>> a = torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
    >>> float(frechet_distance(a, a)) < 1e-6, round(float(frechet_distance(a, a + 2)), 6)
    (True, 12.0)
    """
    if features_a.dim() != 2 or features_b.dim() != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(
            f"features must be (N, D) and (M, D), got {tuple(features_a.shape)} and {tuple(features_b.shape)}"
        )
    if min(features_a.shape[0], features_b.shape[0]) < 2:
        raise ValueError("frechet_distance needs at least 2 feature vectors in each set")
    a, b = features_a.double(), features_b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    values, vectors = torch.linalg.eigh(cov_a)
    sqrt_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return distance.clamp(min=0)


class FeatureClassifier(nn.Module):
    """A small, conventional CNN that judges samples: ReLU, max pooling, 128 features.

    Deliberately different from the energy models' network (ReLU instead of
    swish, pooling instead of strided convolutions), so it does not share their
    blind spots. Input ``(B, channels, *image_size)``, logits ``(B, n_classes)``;
    :meth:`features` gives the ``(B, 128)`` penultimate activations.

    Examples
    --------
    >>> net = FeatureClassifier()
    >>> net(torch.zeros(2, 1, 28, 28)).shape, net.features(torch.zeros(2, 1, 28, 28)).shape
    (torch.Size([2, 10]), torch.Size([2, 128]))
    >>> FeatureClassifier(channels=3, image_size=(32, 32))(torch.zeros(2, 3, 32, 32)).shape  # CIFAR-10's images
    torch.Size([2, 10])
    """

    def __init__(self, channels: int = 1, n_classes: int = 10, n_features: int = 128,
                 image_size: tuple[int, int] = (28, 28)) -> None:
        super().__init__()
        height, width = image_size
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 14 -> 7
            nn.Flatten(), nn.Linear(64 * (height // 4) * (width // 4), n_features), nn.ReLU(),
        )
        self.head = nn.Linear(n_features, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations, shape ``(B, n_features)``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def train_feature_classifier(
    images: Tensor,
    labels: Tensor,
    epochs: int = 3,
    batch_size: int = 64,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` on labelled images with Adam (or load it from a cache).

    With ``cache_path``, a classifier saved there for the same data (same shape
    and pixel sum) is loaded instead of trained, and a newly trained one is saved
    there (atomically).

    Parameters
    ----------
    images : Tensor, shape ``(N, C, H, W)``
    labels : Tensor of int64, shape ``(N,)``
    epochs, batch_size : int
    lr : float
        Adam's learning rate.
    generator : torch.Generator, optional
        Shuffling (on CPU); the weights' initialisation uses the global RNG.
    cache_path : path-like, optional
    progress : bool
        Show a tqdm progress bar over the training batches (and a line when the cache is used).

    Returns
    -------
    FeatureClassifier
        In eval mode, on ``images``' device.

    Examples
    --------
    >>> x, y = torch.randn(32, 1, 28, 28), torch.arange(32) % 10
    >>> train_feature_classifier(x, y, epochs=1, batch_size=16).training
    False
    """
    fingerprint = torch.tensor([float(images.shape[0]), float(images.double().sum()), float(labels.sum())])
    classifier = FeatureClassifier(images.shape[1], int(labels.max()) + 1,
                                   image_size=(images.shape[2], images.shape[3])).to(images.device)
    if cache_path is not None and Path(cache_path).is_file():
        try:
            cached = load_checkpoint(cache_path, map_location=images.device)
            if torch.allclose(cached["fingerprint"].cpu(), fingerprint):
                classifier.load_state_dict(cached["state_dict"])
                if progress:
                    tqdm.write(f"judge: loaded the classifier cached in {cache_path}", file=sys.stderr)
                return classifier.eval()
        except (CheckpointError, KeyError, RuntimeError):
            pass  # a stale or damaged cache is replaced below
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    classifier.train()
    batches_per_epoch = -(-images.shape[0] // batch_size)
    with tqdm(total=epochs * batches_per_epoch, disable=not progress, desc="training the judge", unit="batch",
              dynamic_ncols=True) as bar:
        for _ in range(epochs):
            order = torch.randperm(images.shape[0], generator=generator).to(images.device)
            for index in order.split(batch_size):
                loss = F.cross_entropy(classifier(images[index]), labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                bar.update()
    classifier.eval()
    if cache_path is not None:
        save_checkpoint(cache_path, {"state_dict": classifier.state_dict(), "fingerprint": fingerprint})
    return classifier


def feature_frechet_distance(
    classifier: FeatureClassifier, real: Tensor, samples: Tensor, batch_size: int = 500
) -> Tensor:
    """:func:`frechet_distance` between ``classifier.features`` of real images and of samples.

    Examples
    --------
    >>> net = FeatureClassifier()
    >>> x = torch.randn(20, 1, 28, 28)
    >>> float(feature_frechet_distance(net, x, x)) < 1e-6
    True
    """
    real_features = batched(classifier.features, real, batch_size)
    sample_features = batched(classifier.features, samples, batch_size)
    return frechet_distance(real_features, sample_features)


def recognition_rate(classifier: nn.Module, samples: Tensor, intended: Tensor, batch_size: int = 500) -> Tensor:
    """Fraction of class-conditional samples that ``classifier`` assigns to their intended class.

    Parameters
    ----------
    classifier : nn.Module
        Maps ``(B, ...)`` to logits ``(B, K)``.
    samples : Tensor, shape ``(N, ...)``
    intended : Tensor of int64, shape ``(N,)``
        The class each sample was drawn for.

    Returns
    -------
    Tensor
        Scalar in ``[0, 1]``: the share of samples the classifier assigns to the class they were drawn for.

    Examples
    --------
    >>> recognition_rate(nn.Identity(), torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1]))
    tensor(0.5000)
    """
    if tuple(intended.shape) != (samples.shape[0],):
        raise ValueError(f"intended must have shape ({samples.shape[0]},), got {tuple(intended.shape)}")
    predicted = batched(classifier, samples, batch_size).argmax(dim=1)
    return (predicted == intended).float().mean()
