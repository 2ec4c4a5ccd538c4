"""Out-of-distribution detection with JEM's three scores, measured by AUROC."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..models import ClassifierEnergy

OOD_SCORES = ("energy", "max_softmax", "grad_norm")
"""Names of the scores of :func:`ood_scores`; higher means more in-distribution for each."""


def auroc(positive: Tensor, negative: Tensor) -> Tensor:
    r"""Area under the ROC curve of telling ``positive`` from ``negative`` by a score.

    Equals the Mann-Whitney statistic :math:`P(s^+ > s^-) + \tfrac12 P(s^+ = s^-)`
    for a random pair (computed from ranks, ties averaged): 1 when every positive
    scores above every negative, 0.5 for scores that don't tell them apart.

    Parameters
    ----------
    positive : Tensor, shape ``(N,)``
        Scores of the positives (here: in-distribution data).
    negative : Tensor, shape ``(M,)``
        Scores of the negatives (out-of-distribution inputs).

    Returns
    -------
    Tensor
        Scalar in ``[0, 1]`` (float64).

    Examples
    --------
    >>> auroc(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0]))
    tensor(1., dtype=torch.float64)
    >>> auroc(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]))
    tensor(0.5000, dtype=torch.float64)
    """
    if positive.dim() != 1 or negative.dim() != 1 or positive.numel() == 0 or negative.numel() == 0:
        raise ValueError(
            f"positive and negative must be non-empty 1-D score vectors, got {tuple(positive.shape)} "
            f"and {tuple(negative.shape)}"
        )
    scores = torch.cat([positive, negative]).double()
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    last_rank = counts.cumsum(0).double()  # 1-based rank of the last copy of each distinct value
    average_rank = (last_rank - (counts.double() - 1) / 2)[inverse]
    n_pos, n_neg = positive.numel(), negative.numel()
    rank_sum = average_rank[:n_pos].sum()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def ood_scores(model: ClassifierEnergy, x: Tensor, batch_size: int = 500) -> dict[str, Tensor]:
    r"""JEM's in-distribution scores of inputs ``x``; higher means more like the training data.

    - ``energy``: :math:`-E(x) = \log\sum_k \exp f(x)[k]`, the unnormalised :math:`\log p(x)`;
    - ``max_softmax``: :math:`\max_k p(k \mid x)`, the classifier's confidence;
    - ``grad_norm``: :math:`-\lVert \nabla_x \log p(x) \rVert_2 = -\lVert \nabla_x E(x) \rVert_2`
      (JEM's "approximate mass": data sits where the density is flat and high).

    Parameters
    ----------
    model : ClassifierEnergy
    x : Tensor, shape ``(N, *event_shape)``
    batch_size : int

    Returns
    -------
    dict of str to Tensor, each of shape ``(N,)``

    Examples
    --------
    >>> from torch import nn
    >>> model = ClassifierEnergy(nn.Linear(2, 3), n_classes=3)
    >>> {name: s.shape for name, s in ood_scores(model, torch.zeros(4, 2)).items()}
    {'energy': torch.Size([4]), 'max_softmax': torch.Size([4]), 'grad_norm': torch.Size([4])}
    """
    energy, max_softmax, grad_norm = [], [], []
    for chunk in x.split(batch_size):
        with torch.enable_grad():  # one forward and one backward pass give all three scores
            leaf = chunk.detach().requires_grad_(True)
            logits = model.logits(leaf)
            chunk_energy = model.energy_from_logits(logits)
            (grad,) = torch.autograd.grad(chunk_energy.sum(), leaf)
        energy.append(-chunk_energy.detach())
        max_softmax.append(torch.softmax(logits.detach(), dim=1).max(dim=1).values)
        grad_norm.append(-grad.flatten(1).norm(dim=1))
    return {"energy": torch.cat(energy), "max_softmax": torch.cat(max_softmax), "grad_norm": torch.cat(grad_norm)}


def uniform_noise(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Uniform noise on ``[-1, 1]`` of ``x``'s shape (the data range of ebmlib's images).

    Examples
    --------
    >>> bool(uniform_noise(torch.zeros(3, 4)).abs().max() <= 1)
    True
    """
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return 2 * u - 1


def flipped(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Images mirrored left to right (the last dimension reversed).

    Examples
    --------
    >>> flipped(torch.tensor([[[1.0, 2.0]]]))
    tensor([[[2., 1.]]])
    """
    return x.flip(-1)


def inverted(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Images with inverted intensities, :math:`-x` on ``[-1, 1]`` (white digits on black become black on white).

    Examples
    --------
    >>> inverted(torch.tensor([-1.0, 0.5]))
    tensor([ 1.0000, -0.5000])
    """
    return -x


OOD_TRANSFORMS: dict[str, Callable[[Tensor, torch.Generator | None], Tensor]] = {
    "uniform_noise": uniform_noise,
    "flipped": flipped,
    "inverted": inverted,
}
"""Name -> ``f(x, generator)`` making an out-of-distribution set from in-distribution images ``x``."""


def ood_auroc(
    model: ClassifierEnergy,
    data: Tensor,
    transforms: dict[str, Callable[[Tensor, torch.Generator | None], Tensor]] | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
) -> dict[str, Tensor]:
    """AUROC of every score of :func:`ood_scores` for data against each out-of-distribution set.

    Parameters
    ----------
    model : ClassifierEnergy
    data : Tensor, shape ``(N, *event_shape)``
        In-distribution inputs (e.g. test images).
    transforms : dict, optional
        Name -> ``f(data, generator)`` making the OOD sets; default :data:`OOD_TRANSFORMS`
        (uniform noise, flipped and inverted digits).
    generator : torch.Generator, optional
    batch_size : int

    Returns
    -------
    dict of str to Tensor
        ``"<transform>/<score>"`` -> scalar AUROC (1 = perfectly separated).

    Examples
    --------
    >>> from torch import nn
    >>> model = ClassifierEnergy(nn.Linear(2, 3), n_classes=3)
    >>> sorted(ood_auroc(model, torch.randn(8, 2), {"shifted": lambda x, g: x + 5}))
    ['shifted/energy', 'shifted/grad_norm', 'shifted/max_softmax']
    """
    transforms = OOD_TRANSFORMS if transforms is None else transforms
    inside = ood_scores(model, data, batch_size)
    results = {}
    for name, transform in transforms.items():
        outside = ood_scores(model, transform(data, generator), batch_size)
        results.update({f"{name}/{score}": auroc(inside[score], outside[score]) for score in OOD_SCORES})
    return results
