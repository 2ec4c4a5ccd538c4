"""The sampler interface: advance chains one step (``step``) or many (``sample``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, Literal, NamedTuple, TypedDict, TypeVar, cast, overload

import torch
from torch import Tensor, nn

from .._checks import check_batch, check_count, check_generator
from ..models.base import check_energy
from .acceleration import (
    PRECISIONS,
    autocast,
    check_cuda_graph_available,
    check_precision,
    compiled,
    run_in_cuda_graph,
)

NONFINITE_CHAINS = "_nonfinite_chains"
"""Diagnostics key under which a ``check_finite`` run hands its count of broken chains to :meth:`Sampler.sample`."""

Value = TypeVar("Value")


class ChainState(NamedTuple):
    """Where a batch of chains stands.

    A sampler that keeps more per chain (velocities, replicas, a step count)
    puts it in ``extras`` and names it in a subclass: ``velocity = Extra[Tensor]()``
    in the class body reads ``state.extras.get("velocity")`` (``Extra`` and
    ``with_extras`` of ``ebmlib.samplers.base``; :class:`~ebmlib.samplers.KineticState`
    is a whole example). Everything a state holds is in its fields, so
    ``_replace``, pickling and the finiteness check see it all, whatever the subclass.

    Attributes
    ----------
    position : Tensor, shape ``(B, *event_shape)``
        Current samples.
    energy, grad : Tensor or None
        ``E(position)`` ``(B,)`` and ``dE/dposition`` (same shape as ``position``)
        when a sampler already computed them (MALA, HMC); ``None`` otherwise.
    extras : dict
        Name -> Tensor or nested ChainState (for samplers that run others): what
        a sampler adds to the state; empty by default. Read-only: build a new
        state to change it.

    Examples
    --------
    >>> import torch
    >>> state = ChainState(torch.zeros(3, 2))
    >>> state.position.shape, state.energy is None, dict(state.extras)
    (torch.Size([3, 2]), True, {})
    """

    position: Tensor
    energy: Tensor | None = None
    grad: Tensor | None = None
    extras: Mapping[str, Tensor | ChainState] = {}


class StepInfo(NamedTuple):
    """Per-step diagnostics, kept as tensors (reading them is the caller's sync).

    A sampler with more diagnostics puts them in ``extras`` and names them in a
    subclass, as for :class:`ChainState` (:class:`~ebmlib.samplers.NUTSInfo` does).

    Attributes
    ----------
    energy : Tensor, shape ``(B,)``
        Energy at the position the step started from.
    grad_norm : Tensor, shape ``(B,)``
        L2 norm of ``dE/dx`` there, per chain.
    acceptance_rate : Tensor or None, shape ``(B,)``
        Metropolis acceptance probability of the step (MALA, HMC); ``None`` for
        samplers without an accept/reject test.
    extras : dict
        Name -> Tensor: a sampler's own diagnostics; empty by default.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import NetworkEnergy
    >>> from ebmlib.samplers import Langevin
    >>> model = NetworkEnergy(torch.nn.Linear(2, 1))
    >>> _, info = Langevin(step_size=0.1).step(model, ChainState(torch.zeros(4, 2)))
    >>> info.energy.shape, info.grad_norm.shape, info.acceptance_rate
    (torch.Size([4]), torch.Size([4]), None)
    """

    energy: Tensor
    grad_norm: Tensor
    acceptance_rate: Tensor | None = None
    extras: Mapping[str, Tensor] = {}


class Extra(Generic[Value]):
    """Names an entry of ``extras`` in a :class:`ChainState` or :class:`StepInfo` subclass, read as an attribute.

    ``velocity = Extra[Tensor]()`` in the class body makes ``state.velocity``
    read ``state.extras.get("velocity")``: ``None`` where the entry is missing.
    The subclass's constructor takes the same names as keyword arguments and
    files them with :func:`with_extras`.

    Examples
    --------
    >>> import torch
    >>> class CountedState(ChainState):
    ...     __slots__ = ()  # no instance dictionary: everything lives in the fields
    ...     n_steps = Extra[Tensor]()
    ...     def __new__(cls, position, energy=None, grad=None, extras=None, *, n_steps=None):
    ...         return super().__new__(cls, position, energy, grad, with_extras(extras, n_steps=n_steps))
    >>> state = CountedState(torch.zeros(3, 2), n_steps=torch.tensor(4))
    >>> int(state.n_steps), dict(state._replace(position=torch.ones(3, 2)).extras)
    (4, {'n_steps': tensor(4)})
    >>> CountedState(torch.zeros(3, 2)).n_steps is None
    True
    """

    name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Extra[Value]: ...

    @overload
    def __get__(self, instance: ChainState | StepInfo, owner: type | None = None) -> Value | None: ...

    def __get__(self, instance: ChainState | StepInfo | None, owner: type | None = None) -> Extra[Value] | Value | None:
        if instance is None:
            return self
        return cast("Value | None", instance.extras.get(self.name))

    def __repr__(self) -> str:
        return f"extras[{self.name!r}]"


def with_extras(extras: Mapping[str, Value] | None, **named: Value | None) -> dict[str, Value]:
    """A new ``extras`` mapping: ``extras`` (or none) with the ``named`` entries that are not ``None``.

    Examples
    --------
    >>> with_extras({"a": 1}, b=2, c=None)
    {'a': 1, 'b': 2}
    """
    return {**(extras or {}), **{name: value for name, value in named.items() if value is not None}}


class FastPaths(TypedDict, total=False):
    """The keyword arguments every sampler's constructor takes besides its own: the fast paths and ``check_finite``.

    Declared once here; a sampler's constructor takes them as
    ``**fast_paths: Unpack[FastPaths]`` and hands them to
    :class:`~ebmlib.samplers.Sampler`, which checks them, keeps them as
    attributes of the same names and puts them, in this order, at the end of
    :meth:`~ebmlib.samplers.Sampler.configuration` (the CUDA-graph cache key).
    All are off by default; :class:`~ebmlib.samplers.Sampler` says what each
    keeps and costs.

    Attributes
    ----------
    precision : str
        ``"full"`` (default) computes in the chains' dtype; ``"bf16"`` runs the model
        under bfloat16 autocast. One of the sampler's ``precisions``.
    compile_gradient : bool
        ``torch.compile`` the energy-and-gradient evaluation.
    cuda_graph : bool
        Replay :meth:`~ebmlib.samplers.Sampler.sample` from a CUDA graph.
    check_finite : bool
        Raise ``FloatingPointError`` when a :meth:`~ebmlib.samplers.Sampler.sample`
        call ends with non-finite chains.

    Examples
    --------
    >>> from ebmlib.samplers import Langevin
    >>> fast: FastPaths = {"precision": "bf16", "compile_gradient": True}
    >>> Langevin(step_size=0.1, **fast).configuration()[-4:]
    (('precision', 'bf16'), ('compile_gradient', True), ('cuda_graph', False), ('check_finite', False))
    >>> import inspect  # the keyword-only parameters of Sampler.__init__ are these, in this order
    >>> [p.name for p in inspect.signature(Sampler).parameters.values() if p.kind is p.KEYWORD_ONLY]
    ['precision', 'compile_gradient', 'cuda_graph', 'check_finite']
    """

    precision: str
    compile_gradient: bool
    cuda_graph: bool
    check_finite: bool


def energy_and_grad(
    model: nn.Module, x: Tensor, y: Tensor | None = None, precision: str = "full"
) -> tuple[Tensor, Tensor]:
    """``E(x)`` ``(B,)`` and ``dE/dx`` by autograd, both detached, in ``x``'s dtype.

    Only ``x`` is differentiated: parameters' ``.grad`` are never touched.

    Parameters
    ----------
    model : nn.Module
        Maps ``x`` (and labels ``y``) to energies ``(B,)``.
    x : Tensor, shape ``(B, *event_shape)``
    y : Tensor of int64, shape ``(B,)``, optional
    precision : {"full", "bf16"}
        ``"bf16"`` runs the model under ``torch.autocast(dtype=torch.bfloat16)``;
        the energy is cast back to ``x.dtype`` and the gradient comes back in it.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import NetworkEnergy
    >>> model = NetworkEnergy(torch.nn.Linear(2, 1))
    >>> energy, grad = energy_and_grad(model, torch.zeros(3, 2))
    >>> energy.shape, grad.shape, torch.equal(grad[0], model.network.weight[0])
    (torch.Size([3]), torch.Size([3, 2]), True)
    """
    check_precision(precision)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        with autocast(precision, x.device.type):
            energy = model(x) if y is None else model(x, y)
        check_energy(energy, x, type(model).__name__)
        energy = energy.to(x.dtype)
        (grad,) = torch.autograd.grad(energy.sum(), x)
    return energy.detach(), grad


def per_chain_norm(t: Tensor) -> Tensor:
    """L2 norm over all but the first dimension, shape ``(B,)``."""
    return t.flatten(1).norm(dim=1)


def per_chain(values: Tensor, like: Tensor) -> Tensor:
    """``values`` of shape ``(B,)`` viewed as ``(B, 1, ..., 1)``, to broadcast one value per chain against ``like``.

    Examples
    --------
    >>> import torch
    >>> per_chain(torch.tensor([1.0, 2.0]), torch.ones(2, 3, 4)).shape
    torch.Size([2, 1, 1])
    """
    return values.view(-1, *([1] * (like.dim() - 1)))


def standard_normal(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Fresh :math:`\\mathcal{N}(0, I)` noise with ``like``'s shape, dtype and device, drawn from ``generator``.

    Examples
    --------
    >>> import torch
    >>> noise = standard_normal(torch.zeros(2, 3, dtype=torch.float64), torch.Generator().manual_seed(0))
    >>> noise.shape, noise.dtype
    (torch.Size([2, 3]), torch.float64)
    """
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


class Sampler(nn.Module, ABC):
    """Abstract MCMC sampler for an energy model :math:`p(x) \\propto e^{-E(x)}`.

    A sampler holds configuration only; the chains' state is passed in and out,
    and every random draw uses the ``generator`` given (the global RNG if ``None``).
    It never changes the model's train/eval mode and never leaves gradients on
    its parameters, and no step reads a tensor's value on the host. Subclasses
    implement :meth:`step` and may override :meth:`advance`.

    The fast paths are opt-in, one argument each, and combine:

    - ``precision="bf16"``: run the model under bfloat16 autocast (on CPUs with
      AMX-bf16 and on GPUs; 2.5x faster for the MNIST CNN on a Xeon with AMX);
      chains, gradients and updates stay in the chains' dtype (float32 chains:
      autocast leaves float64 alone). Energies carry bf16's ~3 significant
      digits, so keep it for samplers that move by gradients alone (Langevin).
    - ``compile_gradient=True``: ``torch.compile`` the energy-and-gradient
      evaluation (:func:`energy_and_grad`); torch compiles once per model, input
      shape and dtype, and the first call pays the compile time (seconds).
    - ``cuda_graph=True``: on CUDA, capture the whole fixed-shape run of
      :meth:`sample` (all ``n_steps`` steps, diagnostics included) in a CUDA
      graph on first use and replay it afterwards, removing the per-kernel
      launch cost. The graph reads the model's parameters in place, so training
      between calls is seen; it bakes in everything else, so a new model, input
      shape, ``n_steps``, generator or sampler setting (one of
      :meth:`configuration`) captures a new graph (the last few are kept). Pass
      the same generator to every call, reseeding it if need be, so the graph
      is replayed rather than recaptured. Needs a model without host
      synchronisation; raises ``RuntimeError`` where CUDA is missing.

    Every sampler takes all three, and ``check_finite``, as keyword arguments,
    declared once in ``ebmlib.samplers.base.FastPaths``: a subclass's constructor
    takes ``**fast_paths: Unpack[FastPaths]`` and passes them on here. A sampler
    whose result depends on energy values, not only on gradients (an
    accept/reject test: MALA, HMC), lists only ``"full"`` in :attr:`precisions`
    and refuses ``precision="bf16"`` with a ``ValueError``.

    ``check_finite=True`` adds one check at the end of each :meth:`sample`
    call (never per step): if any chain's position (or, where the final state
    carries them, its energy or gradient) is NaN or Inf, it raises
    ``FloatingPointError`` naming the model. It reads one number from the
    device, so it is the one host synchronisation of the call.

    Subclasses declare in :attr:`settings` the names of the attributes that
    configure their step; :meth:`configuration` (the CUDA-graph cache key and
    the ``repr``) is read from it, never by reflection.

    Parameters
    ----------
    n_steps : int
        Default number of steps for :meth:`sample`, ``>= 1``.
    precision : {"full", "bf16"}
        ``"full"`` computes in the chains' dtype; one of :attr:`precisions`.
    compile_gradient : bool
        Compile the energy-and-gradient evaluation.
    cuda_graph : bool
        Replay :meth:`sample` from a CUDA graph.
    check_finite : bool
        Raise ``FloatingPointError`` when a :meth:`sample` call ends with
        non-finite chains.

    Examples
    --------
    A sampler only implements :meth:`step`; here, noiseless gradient descent:

    >>> import torch
    >>> from ebmlib.models import NetworkEnergy
    >>> from ebmlib.samplers import ChainState, Sampler, StepInfo
    >>> class GradientDescent(Sampler):
    ...     def step(self, model, state, y=None, generator=None):
    ...         energy, grad = self.energy_and_grad(model, state.position, y)
    ...         grad_norm = grad.flatten(1).norm(dim=1)  # one per chain
    ...         return ChainState(state.position - 0.1 * grad), StepInfo(energy, grad_norm)
    >>> model = NetworkEnergy(torch.nn.Linear(2, 1))
    >>> x, diagnostics = GradientDescent(n_steps=5).sample(model, torch.zeros(3, 2), return_diagnostics=True)
    >>> x.shape, diagnostics["grad_norm"].shape
    (torch.Size([3, 2]), torch.Size([5]))
    >>> GradientDescent(n_steps=5).configuration()[:2]
    (('n_steps', 5), ('precision', 'full'))
    """

    settings: ClassVar[tuple[str, ...]] = ("n_steps",)
    """Names of the attributes that configure this sampler's step (hashable values).
    A subclass lists all of its own (``("step_size", ..., "n_steps")``); the fast
    paths and ``check_finite`` are added by :meth:`configuration`."""

    precisions: ClassVar[tuple[str, ...]] = PRECISIONS
    """The ``precision`` values this sampler is valid for."""

    def __init__(
        self,
        n_steps: int,
        *,
        precision: str = "full",
        compile_gradient: bool = False,
        cuda_graph: bool = False,
        check_finite: bool = False,
    ) -> None:
        super().__init__()
        self.n_steps = check_count(n_steps, "n_steps")
        check_precision(precision)
        if precision not in self.precisions:
            raise ValueError(
                f"{type(self).__name__} supports precision in {self.precisions}, got {precision!r}: its result depends "
                "on energy values (an accept/reject test), which bfloat16 rounds to about 3 significant digits"
            )
        for name, flag in (("compile_gradient", compile_gradient), ("cuda_graph", cuda_graph),
                           ("check_finite", check_finite)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r} ({type(flag).__name__})")
        if cuda_graph:
            check_cuda_graph_available()
            if "settings" not in vars(type(self)):
                raise TypeError(
                    f"cuda_graph=True needs {type(self).__name__} to declare its own `settings` (the names of the "
                    "attributes its step depends on): a captured graph bakes them in, and the cache key is read from it"
                )
        self.precision = precision
        self.compile_gradient = compile_gradient
        self.cuda_graph = cuda_graph
        self.check_finite = check_finite

    def configuration(self) -> tuple[tuple[str, Any], ...]:
        """``(name, value)`` of every declared setting, then of the fast paths and ``check_finite``.

        Everything a run of this sampler depends on besides the model, the inputs, ``n_steps``
        and the generator: the key of its captured CUDA graphs, and its ``repr``.
        """
        return tuple((name, getattr(self, name)) for name in (*self.settings, *FastPaths.__annotations__))

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.configuration())

    def energy_and_grad(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """:func:`energy_and_grad` with this sampler's ``precision`` and ``compile_gradient`` settings."""
        if self.compile_gradient:
            return compiled(energy_and_grad)(model, x, y, self.precision)
        return energy_and_grad(model, x, y, self.precision)

    def energy_and_grad_at(self, model: nn.Module, state: ChainState, y: Tensor | None) -> tuple[Tensor, Tensor]:
        """The state's energy and gradient: reused when the state carries them, else computed."""
        if state.energy is not None and state.grad is not None:
            return state.energy, state.grad
        return self.energy_and_grad(model, state.position, y)

    @abstractmethod
    def step(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[ChainState, StepInfo]:
        """Advance every chain by one step.

        Parameters
        ----------
        model : EnergyModel
            Maps ``(B, *event_shape)`` (and labels ``y``) to energies ``(B,)``.
        state : ChainState
            Current state; ``ChainState(x)`` starts from positions ``x``.
        y : Tensor of int64, shape ``(B,)``, optional
            Labels: sample from :math:`E(x, y)` instead of :math:`E(x)`.
        generator : torch.Generator, optional
            Source of every random draw; on the chains' device.

        Returns
        -------
        (ChainState, StepInfo)
        """

    def advance(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> ChainState:
        """:meth:`step` without its diagnostics: the same move, drawing the same noise.

        :meth:`sample` calls it when no diagnostics are requested; samplers
        override it to skip computing them.
        """
        return self.step(model, state, y, generator)[0]

    @overload
    def sample(
        self, model: nn.Module, x: Tensor, n_steps: int | None = ..., y: Tensor | None = ...,
        generator: torch.Generator | None = ..., return_diagnostics: Literal[False] = ...,
    ) -> Tensor: ...

    @overload
    def sample(
        self, model: nn.Module, x: Tensor, n_steps: int | None = ..., y: Tensor | None = ...,
        generator: torch.Generator | None = ..., *, return_diagnostics: Literal[True],
    ) -> tuple[Tensor, dict[str, Tensor]]: ...

    def sample(
        self,
        model: nn.Module,
        x: Tensor,
        n_steps: int | None = None,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
        return_diagnostics: bool = False,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Run chains from ``x`` for ``n_steps`` steps.

        Input checks read only shapes and dtypes, plus NaN/Inf for CPU tensors
        (where reading a value costs no device synchronisation). With
        ``check_finite``, the end of the call reads one number from the device.

        Parameters
        ----------
        model : EnergyModel
        x : Tensor, shape ``(B, *event_shape)``
            Starting points (not modified).
        n_steps : int, optional
            Defaults to the sampler's ``n_steps``.
        y : Tensor of int64, shape ``(B,)``, optional
            Labels for class-conditional sampling.
        generator : torch.Generator, optional
        return_diagnostics : bool
            Also return a dict of per-step tensors of shape ``(n_steps,)``:
            ``energy`` and ``grad_norm`` (means over chains) and, where the
            sampler has one, ``acceptance_rate``.

        Returns
        -------
        Tensor, shape ``(B, *event_shape)``, detached
            Final positions (and the diagnostics dict on request).

        Raises
        ------
        FloatingPointError
            With ``check_finite``, if a chain ends with a NaN or Inf position,
            energy or gradient.
        """
        n_steps = self.n_steps if n_steps is None else check_count(n_steps, "n_steps", minimum=0)
        check_batch(x, "x")
        self.check_start(x)
        check_generator(generator)
        if y is not None and tuple(y.shape) != (x.shape[0],):
            raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")

        def run(x: Tensor, y: Tensor | None, n_steps: int) -> tuple[Tensor, dict[str, Tensor]]:
            state, diagnostics = self.run_chains(model, x, n_steps, y, generator, return_diagnostics)
            if self.check_finite:
                diagnostics = {**diagnostics, NONFINITE_CHAINS: count_nonfinite_chains(state)}
            return state.position.detach(), diagnostics

        x = x.detach()
        if self.cuda_graph and n_steps > 0:
            key = (self.configuration(), return_diagnostics)
            samples, diagnostics = run_in_cuda_graph(self, model, run, x, y, n_steps, generator, key)
        else:
            samples, diagnostics = run(x, y, n_steps)
        if self.check_finite:
            self.raise_if_nonfinite(diagnostics.pop(NONFINITE_CHAINS), model, x.shape[0], n_steps)
        return (samples, diagnostics) if return_diagnostics else samples

    def check_start(self, x: Tensor) -> None:
        """Raise a clear error for starting points ``x`` this sampler cannot run from; accepts any by default.

        :meth:`sample` calls it after checking that ``x`` is a floating batch, before any work;
        :class:`~ebmlib.samplers.DiscreteSampler` overrides it to refuse what is not bits or one-hot vectors.
        """

    def raise_if_nonfinite(self, nonfinite_chains: Tensor, model: nn.Module, n_chains: int, n_steps: int) -> None:
        """Raise ``FloatingPointError`` if ``nonfinite_chains`` (a count, shape ``()``) is not 0: one host read."""
        broken = int(nonfinite_chains)
        if broken:
            raise FloatingPointError(
                f"{type(self).__name__}.sample: {broken} of {n_chains} chains hold NaN or Inf after {n_steps} steps; "
                f"the energy model {type(model).__name__} returned non-finite energies or gradients on them, or "
                "the chains diverged. Check the model on these inputs, lower step_size, or clamp the chains"
            )

    def run_chains(
        self,
        model: nn.Module,
        x: Tensor,
        n_steps: int,
        y: Tensor | None,
        generator: torch.Generator | None,
        return_diagnostics: bool,
    ) -> tuple[ChainState, dict[str, Tensor]]:
        """The loop behind :meth:`sample`, without input checks: the final state and
        diagnostics (an empty dict unless ``return_diagnostics``)."""
        state = ChainState(x)
        if not return_diagnostics:
            for _ in range(n_steps):
                state = self.advance(model, state, y, generator)
            return state, {}
        infos: list[StepInfo] = []
        for _ in range(n_steps):
            state, info = self.step(model, state, y, generator)
            infos.append(info)
        return state, stack_diagnostics(infos, x)


def count_nonfinite_chains(state: ChainState) -> Tensor:
    """How many chains hold a NaN or Inf: an int64 count, shape ``()``, on the chains' device.

    Every floating tensor the state carries is looked at: position, energy,
    gradient and its ``extras`` (velocities, replicas, ...), nested states
    included. A tensor with one row per chain flags its own chains; any other
    (per-replica, per-level) flags every chain when it holds a non-finite value.

    Examples
    --------
    >>> import torch
    >>> count_nonfinite_chains(ChainState(torch.tensor([[0.0, float("nan")], [1.0, 2.0]])))
    tensor(1)
    """
    n_chains = state.position.shape[0]
    flags = torch.zeros(n_chains, dtype=torch.bool, device=state.position.device)
    for t in carried_tensors(state):
        if not t.is_floating_point():
            continue
        if t.dim() >= 1 and t.shape[0] == n_chains:
            flags = flags | ~torch.isfinite(t.reshape(n_chains, -1)).all(1)
        else:
            flags = flags | ~torch.isfinite(t).all()
    return flags.sum()


def carried_tensors(state: ChainState) -> list[Tensor]:
    """The tensors a state holds: position, energy, gradient and ``extras``, nested states unpacked."""
    found: list[Tensor] = []
    for value in (state.position, state.energy, state.grad, *state.extras.values()):
        if isinstance(value, ChainState):
            found += carried_tensors(value)
        elif isinstance(value, Tensor):
            found.append(value)
    return found


def stack_diagnostics(infos: list[StepInfo], x: Tensor) -> dict[str, Tensor]:
    """Stack per-step infos into ``(n_steps,)`` tensors of chain means."""
    empty = x.new_zeros(0)
    out = {
        "energy": torch.stack([i.energy.mean() for i in infos]) if infos else empty,
        "grad_norm": torch.stack([i.grad_norm.mean() for i in infos]) if infos else empty,
    }
    rates = [i.acceptance_rate for i in infos if i.acceptance_rate is not None]
    if rates:
        out["acceptance_rate"] = torch.stack([r.mean() for r in rates])
    return out
