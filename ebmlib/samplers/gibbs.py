"""Gibbs sampling of binary or one-hot categorical data, one site at a time."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from .._checks import check_choice
from ..models.base import check_energy
from .base import ChainState, FastPaths, StepInfo
from .discrete import DiscreteSampler, categories, gumbel_argmax, n_values, positions, shifted

SCANS = ("systematic", "random")
"""Orders in which :class:`Gibbs` visits the sites: all in turn, or one drawn at random per update."""


class Gibbs(DiscreteSampler):
    r"""Gibbs sampling: each site in turn is redrawn from its exact conditional law given the others.

    For a site :math:`i` with values :math:`k \in \{0, \dots, K-1\}` (bits: :math:`K = 2`),
    with :math:`x^{(i \to k)}` the position with site :math:`i` set to :math:`k`,

    .. math::

        p(x_i = k \mid x_{-i}) = \frac{e^{-E(x^{(i \to k)})}}{\sum_{l} e^{-E(x^{(i \to l)})}},
        \qquad \text{for bits: } p(x_i \ne \text{its value}) = \sigma\big(E(x) - E(x^{(i\to 1 - x_i)})\big).

    The energy of the current value is known from the previous update, so one site update is
    **one** forward pass of the model on the :math:`K - 1` other values of every chain
    (a batch of :math:`(K-1)B`); no gradient is computed. One step updates as many sites as
    there are (:math:`S`), so it costs :math:`S` forward passes (plus one for the starting
    energies, once per :meth:`sample` call):

    - ``scan="systematic"``: sites :math:`0, 1, \dots, S-1` in order, the same for every chain;
    - ``scan="random"``: each update draws a site uniformly at random, for each chain apart.

    Either way :math:`e^{-E}` is stationary, with no accept/reject test. Single-site updates mix
    slowly where sites are strongly coupled; :class:`~ebmlib.samplers.GibbsWithGradients` picks
    which site to change from the gradient instead.

    Positions are bits in {0, 1}, every entry a site; or, with ``one_hot=True``, one-hot vectors
    over their last dimension, ``(B, *sites, K)``. :meth:`sample` refuses anything else.
    :class:`~ebmlib.samplers.StepInfo` reports a ``grad_norm`` of NaN: Gibbs evaluates no gradient.

    Parameters
    ----------
    n_steps : int
        Default number of steps (sweeps of :math:`S` site updates) for :meth:`sample`.
    scan : {"systematic", "random"}
        The order of the site updates.
    one_hot : bool
        Sites are one-hot vectors over the last dimension (categorical data) instead of bits.
    precision, cuda_graph, check_finite
        Keyword-only: the fast paths and the finiteness check of :class:`~ebmlib.samplers.Sampler`.
        ``precision`` only ``"full"``; ``compile_gradient`` is refused (there is no gradient
        evaluation to compile).

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import IsingEnergy
    >>> model = IsingEnergy(4, coupling=0.3)
    >>> x0 = torch.randint(0, 2, (8, 4, 4), generator=torch.Generator().manual_seed(0)).float()
    >>> x = Gibbs(n_steps=3).sample(model, x0, generator=torch.Generator().manual_seed(1))
    >>> x.shape, bool(((x == 0) | (x == 1)).all())
    (torch.Size([8, 4, 4]), True)
    """

    settings = ("n_steps", "scan", "one_hot")

    def __init__(
        self, n_steps: int = 1, scan: str = "systematic", one_hot: bool = False, **fast_paths: Unpack[FastPaths]
    ) -> None:
        if fast_paths.get("compile_gradient", False):
            raise ValueError("Gibbs computes no gradient, so compile_gradient=True has nothing to compile; leave "
                             "it False (GibbsWithGradients and DMALA compile theirs)")
        super().__init__(n_steps, one_hot, **fast_paths)
        self.scan = check_choice(scan, SCANS, "scan")

    def evaluate(self, model: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
        """``E(x)`` ``(N,)`` without gradients, in ``x``'s dtype (labels ``y`` ``(N,)`` optional)."""
        with torch.no_grad():
            energy = model(x) if y is None else model(x, y)
        check_energy(energy, x, type(model).__name__)
        return energy.to(x.dtype)

    def update_site(
        self, model: nn.Module, x: Tensor, c: Tensor, energy: Tensor, site: Tensor, y: Tensor | None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor]:
        """Redraw site ``site[b]`` of each chain ``b`` from its conditional law: the new categories ``(B, S)``
        and energies ``(B,)``, from the chains' categories ``c`` and energies ``energy``."""
        k = n_values(x, self.one_hot)
        current = c.gather(1, site[:, None])  # (B, 1)
        if k == 2:  # one other value: change it with probability sigmoid(E(x) - E(x')), one uniform per chain
            changed = c.scatter(1, site[:, None], 1 - current)
            changed_energy = self.evaluate(model, positions(changed, x, self.one_hot), y)
            uniform = torch.rand(energy.shape, generator=generator, device=energy.device, dtype=energy.dtype)
            change = uniform < torch.sigmoid(energy - changed_energy)
            return torch.where(change[:, None], changed, c), torch.where(change, changed_energy, energy)
        # The K - 1 other values, (current + j) mod K for j = 1 .. K-1, one batch of (K - 1) B chains, j-major.
        others = shifted(current, torch.arange(1, k, device=c.device), k).permute(2, 0, 1).reshape(-1, 1)
        changed = c.repeat(k - 1, 1).scatter(1, site.repeat(k - 1)[:, None], others)
        other_energies = self.evaluate(model, positions(changed, x, self.one_hot),
                                       None if y is None else y.repeat(k - 1))
        energies = torch.cat([energy[None], other_energies.view(k - 1, -1)])  # (K, B); row j: offset j
        offset = gumbel_argmax(-energies, generator, dim=0)  # (B,)
        new_value = (current[:, 0] + offset) % k
        return c.scatter(1, site[:, None], new_value[:, None]), energies.gather(0, offset[None])[0]

    def step(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[ChainState, StepInfo]:
        x = state.position
        start_energy = self.evaluate(model, x, y) if state.energy is None else state.energy
        c = categories(x, self.one_hot)
        batch, n_sites = c.shape
        energy = start_energy
        for i in range(n_sites):
            if self.scan == "systematic":
                site = torch.full((batch,), i, dtype=torch.long, device=c.device)
            else:
                site = torch.randint(n_sites, (batch,), generator=generator, device=c.device)
            c, energy = self.update_site(model, x, c, energy, site, y, generator)
        new_state = ChainState(positions(c, x, self.one_hot), energy)
        return new_state, StepInfo(start_energy, torch.full_like(start_energy, float("nan")))
