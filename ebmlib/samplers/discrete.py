"""What the samplers of discrete data share: chains of bits or of one-hot categories, read as sites with K values.

A position is either a tensor of bits in {0, 1} (every entry a site with two values) or, with
``one_hot=True``, one-hot vectors over its last dimension (every vector a site with K values).
Either way the samplers work on the categories ``c`` of the ``S`` sites, an int64 tensor ``(B, S)``,
and name the values of a site by their offset from its current value (0: no change, ``1 .. K-1``:
the others), so that bits and one-hot vectors share one code path. :class:`DiscreteSampler` is the
base class of :class:`~ebmlib.samplers.Gibbs`, :class:`~ebmlib.samplers.GibbsWithGradients` and
:class:`~ebmlib.samplers.DMALA`: it checks that chains start on such data.
"""

from __future__ import annotations

import torch
from torch import Tensor
from typing_extensions import Unpack

from .base import ChainState, FastPaths, Sampler, StepInfo, per_chain_norm
from .metropolis import metropolis_accept


def check_discrete(x: Tensor, one_hot: bool, sampler: str, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` holds bits in {0, 1} (or, with ``one_hot``, one-hot vectors over its last
    dimension). Reads values of CPU tensors only, like every input check; on other devices it checks shapes.

    Examples
    --------
    >>> import torch
    >>> check_discrete(torch.tensor([[0.0, 1.0]]), one_hot=False, sampler="Gibbs")
    >>> check_discrete(torch.tensor([[0.0, 0.5]]), one_hot=False, sampler="Gibbs")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: x must hold bits in {0, 1} (Gibbs samples binary data), got values outside {0, 1}; ...
    """
    if one_hot:
        if x.dim() < 3 or x.shape[-1] < 2:
            raise ValueError(f"x must have shape (B, *sites, K) with one-hot vectors of K >= 2 categories over its "
                             f"last dimension ({sampler} with one_hot=True), got {tuple(x.shape)}")
        if x.device.type == "cpu" and not (torch.equal(x, (x == 1).to(x.dtype))
                                           and torch.equal(x.sum(-1), torch.ones_like(x[..., 0]))):
            raise ValueError(f"x must hold one-hot vectors over its last dimension ({sampler} with one_hot=True "
                             "samples categorical data): every entry 0 or 1 and exactly one 1 per vector; encode "
                             "categories with torch.nn.functional.one_hot(categories, K).float()")
    elif x.device.type == "cpu" and not torch.equal(x, (x == 1).to(x.dtype)):
        raise ValueError(f"{name} must hold bits in {{0, 1}} ({sampler} samples binary data), got values outside "
                         "{0, 1}; threshold the data first, e.g. (x > 0.5).float(), or pass one_hot=True for "
                         "one-hot categories")


def n_values(x: Tensor, one_hot: bool) -> int:
    """Values per site, ``K``: 2 for bits, the length of the last dimension for one-hot vectors."""
    return x.shape[-1] if one_hot else 2


def categories(x: Tensor, one_hot: bool) -> Tensor:
    """The category of every site, int64 ``(B, S)``: the bits themselves, or the index of each one-hot vector's 1.

    Examples
    --------
    >>> import torch
    >>> categories(torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]]), one_hot=True)
    tensor([[1, 0]])
    """
    return x.flatten(1, -2).argmax(-1) if one_hot else x.flatten(1).long()


def positions(c: Tensor, like: Tensor, one_hot: bool) -> Tensor:
    """Positions of ``like``'s shape and dtype holding categories ``c`` ``(N, S)``, with ``N`` a multiple of
    ``like``'s batch size (the inverse of :func:`categories`).

    Examples
    --------
    >>> import torch
    >>> positions(torch.tensor([[1, 0]]), torch.zeros(1, 2, 3), one_hot=True)
    tensor([[[0., 1., 0.],
             [1., 0., 0.]]])
    """
    shape = (c.shape[0], *like.shape[1:])
    if one_hot:  # a comparison, not nn.functional.one_hot, which reads the values to check them
        return (c[..., None] == torch.arange(like.shape[-1], device=c.device)).to(like.dtype).view(shape)
    return c.to(like.dtype).view(shape)


def shifted(c: Tensor, offsets: Tensor, k: int) -> Tensor:
    r"""The values :math:`(c + j) \bmod K` for every offset :math:`j`: ``(*c.shape, len(offsets))``.

    Every sampler here names the values of a site by their offset from its current value, so that
    offset 0 is "no change" and offsets ``1 .. K-1`` are the other values, whatever ``c`` is.

    Examples
    --------
    >>> import torch
    >>> shifted(torch.tensor([0, 2]), torch.arange(3), 3)
    tensor([[0, 1, 2],
            [2, 0, 1]])
    """
    return (c[..., None] + offsets) % k


def first_order_changes(grad: Tensor, x: Tensor, c: Tensor, one_hot: bool) -> Tensor:
    r"""First-order estimates of :math:`E(x') - E(x)` for every change of one site, ``(B, S, K - 1)``.

    Entry :math:`(i, j)` sets site :math:`i` from its category :math:`c_i` to :math:`k = (c_i + j) \bmod K`,
    :math:`j = 1, \dots, K-1`, which moves :math:`x` by :math:`e_{ik} - e_{ic_i}` (one-hot) or by
    :math:`1 - 2x_i` in coordinate :math:`i` (bits, :math:`j = 1` only), so

    .. math::

        E(x') - E(x) \approx \nabla_{ik} E(x) - \nabla_{ic_i} E(x), \qquad
        \text{for bits: } (1 - 2x_i)\,\partial_i E(x).

    Exact for an energy that is linear in each site separately (an Ising model; not an RBM's free energy).

    Parameters
    ----------
    grad : Tensor, shape of ``x``
        :math:`\nabla_x E(x)`.
    x : Tensor, shape ``(B, *event_shape)``
    c : Tensor of int64, shape ``(B, S)``
        ``categories(x, one_hot)``.
    one_hot : bool

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.0, 1.0]])
    >>> first_order_changes(torch.tensor([[2.0, -1.0]]), x, categories(x, False), one_hot=False)
    tensor([[[2.],
             [1.]]])
    """
    if not one_hot:
        return ((1 - 2 * x) * grad).flatten(1)[..., None]
    per_value = grad.flatten(1, -2)
    k = per_value.shape[-1]
    others = shifted(c, torch.arange(1, k, device=c.device), k)
    return per_value.gather(-1, others) - per_value.gather(-1, c[..., None])


def gumbel_argmax(logits: Tensor, generator: torch.Generator | None, dim: int = -1) -> Tensor:
    r"""One draw from :math:`\operatorname{softmax}(\text{logits})` along ``dim`` per entry (the Gumbel-max trick).

    :math:`\arg\max_k (\ell_k - \log(-\log u_k))` with :math:`u_k \sim U(0, 1)` from ``generator``;
    no host synchronisation, and NaN logits (from a non-finite energy) pick some index instead of raising,
    to be rejected by the caller's Metropolis test.

    Examples
    --------
    >>> import torch
    >>> gumbel_argmax(torch.tensor([[0.0, -float("inf"), -float("inf")]]), torch.Generator().manual_seed(0))
    tensor([0])
    """
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    return (logits - torch.log(-torch.log(uniform))).argmax(dim)


def metropolis_corrected(
    x: Tensor, energy: Tensor, grad: Tensor, proposal: Tensor, proposal_energy: Tensor, proposal_grad: Tensor,
    log_q_forward: Tensor, log_q_backward: Tensor, generator: torch.Generator | None,
) -> tuple[ChainState, StepInfo]:
    r"""Move each chain from ``x`` to ``proposal`` with probability :math:`\min(1, e^{E(x) - E(x') + \log q(x \mid
    x') - \log q(x' \mid x)})` (:func:`~ebmlib.samplers.metropolis_accept`), with the step's diagnostics at ``x``:
    the Metropolis-Hastings correction that Gibbs-with-gradients and DMALA share (energies and log-probabilities
    ``(B,)``)."""
    log_ratio = energy - proposal_energy + log_q_backward - log_q_forward
    new_state, acceptance = metropolis_accept(
        ChainState(x, energy, grad), ChainState(proposal, proposal_energy, proposal_grad), log_ratio, generator
    )
    return new_state, StepInfo(energy, per_chain_norm(grad), acceptance)


class DiscreteSampler(Sampler):
    """A sampler of bits in {0, 1} or, with ``one_hot=True``, of one-hot categories over the last dimension.

    Its :meth:`sample` refuses starting points that are not such data (for CPU tensors; elsewhere only
    shapes are checked) before any work, and it allows only ``precision="full"``: every discrete move
    is decided by energy values. Subclasses implement :meth:`step`.

    Parameters
    ----------
    n_steps : int
    one_hot : bool
        Sites are one-hot vectors over the last dimension of ``(B, *sites, K)`` positions; else every
        entry of the positions is a bit.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.samplers import Gibbs
    >>> from ebmlib.models import IsingEnergy
    >>> Gibbs(n_steps=1).sample(IsingEnergy(3), torch.full((2, 3, 3), 0.5))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: x must hold bits in {0, 1} (Gibbs samples binary data), got values outside {0, 1}; ...
    """

    precisions = ("full",)

    def __init__(self, n_steps: int, one_hot: bool = False, **fast_paths: Unpack[FastPaths]) -> None:
        super().__init__(n_steps, **fast_paths)
        if not isinstance(one_hot, bool):
            raise TypeError(f"one_hot must be True or False, got {one_hot!r} ({type(one_hot).__name__})")
        self.one_hot = one_hot

    def check_start(self, x: Tensor) -> None:
        """Raise a ``ValueError`` unless ``x`` holds bits (or one-hot vectors, with ``one_hot``)."""
        check_discrete(x, self.one_hot, type(self).__name__)
