"""Chain trajectories: a sampler's chains seen every few steps, from their starts to their ends."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .._checks import check_batch
from ..samplers import Sampler


def chain_trajectory(
    sampler: Sampler,
    model: nn.Module,
    start: Tensor,
    n_steps: int,
    record_every: int | Sequence[int],
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    r"""Run ``sampler`` from ``start`` for ``n_steps`` steps, keeping the chains every ``record_every`` steps.

    The chains are Markov, so ``n_steps`` steps in pieces of ``record_every``
    (``sampler.sample(model, x, n_steps=record_every, ...)`` called again on its
    own output) draw the same chain as one call of ``n_steps`` with the same
    generator. Snapshot :math:`r` holds :math:`x_{t_r}` with
    :math:`t_r = \min(r \cdot \text{record\_every}, \text{n\_steps})`;
    snapshot 0 is ``start`` and the last is the final position, so there are
    :math:`\lceil \text{n\_steps} / \text{record\_every} \rceil + 1` of them.

    Parameters
    ----------
    sampler : Sampler
        Anything with ``sample(model, x, n_steps=, y=, generator=)``.
    model : EnergyModel
    start : Tensor, shape ``(B, *event_shape)``
        Where the chains start (not modified).
    n_steps : int
        Total number of steps, ``>= 0``.
    record_every : int or sequence of int
        Steps between snapshots, ``>= 1``; or the steps after which to keep one
        (those in ``1 .. n_steps - 1``; the start and the end are
        always kept).
    y : Tensor of int64, shape ``(B,)``, optional
        Labels for class-conditional chains.
    generator : torch.Generator, optional
        Source of every random draw, on the chains' device.
    callback : callable, optional
        ``callback(steps_done, x)`` after every piece, e.g. to update a progress
        bar or keep a few chains only.

    Returns
    -------
    Tensor, shape ``(n_records + 1, B, *event_shape)``
        The snapshots, the start first, detached.

    Examples
    --------
    >>> from ebmlib.models import NetworkEnergy
    >>> from ebmlib.samplers import Langevin
    >>> model = NetworkEnergy(torch.nn.Linear(2, 1))
    >>> start = torch.zeros(4, 2)
    >>> path = chain_trajectory(Langevin(step_size=0.1), model, start, n_steps=10, record_every=4,
    ...                         generator=torch.Generator().manual_seed(0))
    >>> path.shape  # steps 0, 4, 8, 10
    torch.Size([4, 4, 2])
    >>> end = Langevin(step_size=0.1).sample(model, start, n_steps=10, generator=torch.Generator().manual_seed(0))
    >>> torch.allclose(path[-1], end)
    True
    >>> chain_trajectory(Langevin(step_size=0.1), model, start, n_steps=10, record_every=[3, 9]).shape  # 0, 3, 9, 10
    torch.Size([4, 4, 2])
    """
    check_batch(start, "start")
    if n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative number of steps, got {n_steps}")
    if isinstance(record_every, int):
        if record_every < 1:
            raise ValueError(f"record_every must be a positive number of steps, got {record_every}")
        record_every = range(record_every, n_steps, record_every)
    ends = sorted({step for step in record_every if 0 < step < n_steps} | {n_steps} - {0})
    if y is not None and tuple(y.shape) != (start.shape[0],):
        raise ValueError(f"y must have shape ({start.shape[0]},) like start's batch, got {tuple(y.shape)}")
    x = start.detach()
    snapshots, done = [x], 0
    for end in ends:
        x = sampler.sample(model, x, n_steps=end - done, y=y, generator=generator)
        done = end
        snapshots.append(x)
        if callback is not None:
            callback(done, x)
    return torch.stack(snapshots)
