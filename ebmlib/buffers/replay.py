"""Persistent replay buffer: chains that survive between training steps (PCD)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._checks import check_count, check_labels, check_probability
from .initializers import Initializer


class ReplayBuffer(nn.Module):
    r"""A store of persistent chains that works with any sampler.

    :meth:`sample` draws ``batch_size`` stored chains at random and replaces each,
    with probability ``reinit_prob``, by a fresh start from ``initializer``;
    after running a sampler on them, :meth:`update` writes them back::

        x0, index = buffer.sample(batch_size, generator=g)
        x = sampler.sample(model, x0, generator=g)
        buffer.update(index, x)

    The chains are a registered buffer: they follow ``.to(device)`` and
    round-trip through ``state_dict()``.

    Parameters
    ----------
    capacity : int
        Number of stored chains.
    initializer : Initializer
        Draws fresh chains; fixes the event shape.
    reinit_prob : float
        Per-sample probability of a fresh start in :meth:`sample` (JEM: 0.05).
    n_classes : int, optional
        Split the buffer into ``n_classes`` equal blocks of per-class slots, so
        ``sample(batch_size, y)`` continues chains of the requested classes.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.buffers import UniformInit
    >>> buffer = ReplayBuffer(100, UniformInit((2,)), reinit_prob=0.05)
    >>> g = torch.Generator().manual_seed(0)
    >>> x0, index = buffer.sample(8, generator=g)
    >>> buffer.update(index, x0 * 0.5)
    >>> x0.shape, index.shape
    (torch.Size([8, 2]), torch.Size([8]))
    """

    samples: Tensor

    def __init__(
        self,
        capacity: int,
        initializer: Initializer,
        reinit_prob: float = 0.05,
        n_classes: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(capacity, bool) and isinstance(capacity, int) and capacity < 1:
            raise ValueError(f"capacity must be a positive number of chains, got {capacity}: the buffer would be empty")
        capacity = check_count(capacity, "capacity")
        reinit_prob = check_probability(reinit_prob, "reinit_prob")
        if n_classes is not None and not 1 <= check_count(n_classes, "n_classes") <= capacity:
            raise ValueError(f"n_classes must lie in [1, capacity={capacity}], got {n_classes}")
        self.capacity = capacity
        self.initializer = initializer
        self.reinit_prob = reinit_prob
        self.n_classes = n_classes
        self.slots_per_class = capacity // n_classes if n_classes else capacity
        slot_labels = self.slot_labels(torch.arange(capacity))
        self.register_buffer("samples", initializer(capacity, slot_labels, generator).detach().clone())

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.samples.shape[1:])

    def slot_labels(self, index: Tensor | None = None) -> Tensor | None:
        """The class of each slot in ``index`` (default: every slot, in order), shape ``(len(index),)``;
        ``None`` for a buffer without classes. Class ``k`` owns slots ``k * slots_per_class`` onwards
        (the last class also the remainder).

        Examples
        --------
        >>> from ebmlib.buffers import UniformInit
        >>> ReplayBuffer(7, UniformInit((2,)), n_classes=3).slot_labels().tolist()
        [0, 0, 1, 1, 2, 2, 2]
        """
        if self.n_classes is None:
            return None
        if index is None:
            index = torch.arange(self.capacity, device=self.samples.device)
        return (index // self.slots_per_class).clamp(max=self.n_classes - 1)

    def sample(
        self, batch_size: int, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw chains to continue.

        Parameters
        ----------
        batch_size : int
            At most ``capacity``.
        y : Tensor of int64, shape ``(batch_size,)``, optional
            Classes; with per-class slots, each chain comes from its class's block.
        generator : torch.Generator, optional
            On the buffer's device.

        Returns
        -------
        x : Tensor, shape ``(batch_size, *event_shape)``
            Starting points (a copy; the buffer is unchanged until :meth:`update`).
        index : Tensor of int64, shape ``(batch_size,)``
            Their slots, for :meth:`update`.
        """
        if not 1 <= check_count(batch_size, "batch_size", minimum=0) <= self.capacity:
            raise ValueError(
                f"batch_size must lie in [1, capacity={self.capacity}], got {batch_size}; "
                "make the buffer's capacity at least the batch size"
            )
        device = self.samples.device
        if y is not None:
            check_labels(y, batch_size, self.n_classes, "y")
        if y is not None and self.n_classes is not None:
            offset = torch.randint(self.slots_per_class, (batch_size,), generator=generator, device=device)
            index = y.to(device) * self.slots_per_class + offset
            fresh_labels: Tensor | None = y
        else:
            index = torch.randint(self.capacity, (batch_size,), generator=generator, device=device)
            fresh_labels = y if y is not None else self.slot_labels(index)
        x = self.samples[index]
        if self.reinit_prob > 0:
            fresh = self.initializer(batch_size, fresh_labels, generator).to(x.dtype)
            reinit = torch.rand(batch_size, generator=generator, device=device) < self.reinit_prob
            x = torch.where(reinit.view(-1, *([1] * (x.dim() - 1))), fresh, x)
        return x, index

    def update(self, index: Tensor, x: Tensor) -> None:
        """Store chains ``x`` ``(n, *event_shape)`` in slots ``index`` ``(n,)``."""
        if tuple(x.shape[1:]) != self.event_shape or x.shape[0] != index.shape[0]:
            raise ValueError(
                f"update needs x of shape ({index.shape[0]}, {', '.join(map(str, self.event_shape))}), "
                f"got {tuple(x.shape)}"
            )
        self.samples[index] = x.detach().to(self.samples.dtype)

    def reinitialize(self, generator: torch.Generator | None = None) -> None:
        """Replace every stored chain by a fresh start."""
        labels = self.slot_labels()
        self.samples.copy_(self.initializer(self.capacity, labels, generator))

    def extra_repr(self) -> str:
        return (
            f"capacity={self.capacity}, event_shape={self.event_shape}, "
            f"reinit_prob={self.reinit_prob}, n_classes={self.n_classes}"
        )
