"""Opt-in fast paths for samplers: bf16 autocast, ``torch.compile`` and CUDA graphs.

Each is switched on by one constructor argument of a sampler (``precision="bf16"``,
``compile_gradient=True``, ``cuda_graph=True``; see :class:`~ebmlib.samplers.Sampler`). This
module holds the machinery and knows nothing about any concrete sampler.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from .._checks import check_choice

PRECISIONS = ("full", "bf16")
"""``"full"``: compute in the chains' own dtype; ``"bf16"``: autocast the model to bfloat16."""

WARMUP_STEPS = 3
"""Eager steps run on a side stream before a CUDA-graph capture (cuDNN/cuBLAS and autograd set-up)."""

MAX_GRAPHS_PER_SAMPLER = 4
"""Captured graphs kept per sampler (least recently used dropped first)."""

Function = TypeVar("Function", bound=Callable[..., Any])
Outputs = tuple[Tensor, dict[str, Tensor]]


def check_precision(precision: str) -> None:
    """Raise ``ValueError`` unless ``precision`` is one of :data:`PRECISIONS`.

    Examples
    --------
    >>> check_precision("bf16")
    >>> check_precision("fp8")
    Traceback (most recent call last):
    ...
    ValueError: precision must be one of ('full', 'bf16'), got 'fp8'
    """
    check_choice(precision, PRECISIONS, "precision")


def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context for ``precision`` on ``device_type`` (a no-op for ``"full"``).

    Its weight-cast cache is off: each energy evaluation uses each weight once, and
    casts made inside a CUDA-graph capture must be recomputed on every replay.

    Examples
    --------
    >>> import torch
    >>> with autocast("bf16", "cpu"):
    ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    torch.bfloat16
    """
    if precision == "full":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False)


@functools.cache
def compiled(function: Function) -> Function:
    """``torch.compile(function)``, tracing ``torch.autograd.grad`` into the same graph.

    The compiled function is cached, so every caller shares one set of compiled
    graphs (torch recompiles per model, input shape, dtype and constant argument).
    Where this torch's Dynamo can trace autograd calls
    (``torch._dynamo.config.trace_autograd_ops``) the energy and its gradient form
    one graph; elsewhere Dynamo splits the function around ``autograd.grad``, which
    stays correct.

    Examples
    --------
    >>> import torch
    >>> compiled(torch.sin) is compiled(torch.sin)
    True
    """
    compiled_function = torch.compile(function)
    traceable = hasattr(torch._dynamo.config, "trace_autograd_ops")
    options: dict[str, Any] = {"trace_autograd_ops": True} if traceable else {}

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch._dynamo.config.patch(options):
            return compiled_function(*args, **kwargs)

    return run  # type: ignore[return-value]


def check_cuda_graph_available() -> None:
    """Raise ``RuntimeError`` unless CUDA is available (``cuda_graph=True`` needs it).

    Examples
    --------
    >>> import torch
    >>> try:
    ...     check_cuda_graph_available()
    ... except RuntimeError as error:
    ...     assert not torch.cuda.is_available() and "needs CUDA" in str(error)
    """
    if not torch.cuda.is_available():
        raise RuntimeError(
            "cuda_graph=True needs CUDA, but torch.cuda.is_available() is False on this machine; "
            "use cuda_graph=False (on CPU, precision='bf16' is the fast path)"
        )


class CapturedRun:
    """A fixed-shape run of chains captured once in a CUDA graph, then replayed.

    ``run(x, y, n_steps) -> (positions, diagnostics)`` must be free of host
    synchronisation and draw randomness only from ``generator`` (the device's
    default generator if ``None``). The capture reads the model's parameters in
    place, so in-place updates (an optimizer step, ``load_state_dict``) are seen
    by every replay. The generator is registered with the graph, so each replay
    draws fresh noise and the same seed gives the same samples.

    Parameters
    ----------
    run : callable
        Advances chains ``x`` ``(B, *event_shape)`` (labels ``y`` ``(B,)`` or ``None``)
        by ``n_steps`` steps.
    x, y : Tensor
        Example inputs fixing shapes, dtypes and the CUDA device.
    n_steps : int
        Steps captured in the graph.
    generator : torch.Generator or None
        CUDA generator the run draws from.

    Examples
    --------
    >>> import torch
    >>> double = lambda x, y, n_steps: (x * 2**n_steps, {})
    >>> captured = CapturedRun(double, torch.ones(2, device="cuda"), None, 3, None)  # doctest: +SKIP
    >>> captured(torch.ones(2, device="cuda"), None)[0]  # doctest: +SKIP
    tensor([8., 8.], device='cuda:0')
    """

    def __init__(
        self,
        run: Callable[[Tensor, Tensor | None, int], Outputs],
        x: Tensor,
        y: Tensor | None,
        n_steps: int,
        generator: torch.Generator | None,
    ) -> None:
        self.static_x = x.clone()
        self.static_y = None if y is None else y.clone()
        device = x.device
        rng = generator if generator is not None else torch.cuda.default_generators[device.index]
        rng_state = rng.get_state()
        with torch.cuda.device(device):
            side_stream = torch.cuda.Stream(device)
            side_stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side_stream):
                for _ in range(WARMUP_STEPS):
                    run(self.static_x, self.static_y, 1)
            torch.cuda.current_stream(device).wait_stream(side_stream)
            rng.set_state(rng_state)  # the warm-up's draws leave no trace
            self.graph = torch.cuda.CUDAGraph()
            if generator is not None:
                self.graph.register_generator_state(generator)
            try:
                with torch.cuda.graph(self.graph):
                    self.outputs = run(self.static_x, self.static_y, n_steps)
            except RuntimeError as error:
                raise RuntimeError(
                    "cuda_graph=True could not capture the sampling run in a CUDA graph: the model must not "
                    "read tensor values on the host (.item(), .cpu(), bool(tensor), data-dependent shapes); "
                    f"use cuda_graph=False for such a model. CUDA said: {error}"
                ) from error

    def __call__(self, x: Tensor, y: Tensor | None) -> Outputs:
        """Replay on new inputs of the captured shapes; returns fresh tensors."""
        self.static_x.copy_(x)
        if self.static_y is not None and y is not None:
            self.static_y.copy_(y)
        self.graph.replay()
        positions, diagnostics = self.outputs
        return positions.clone(), {name: value.clone() for name, value in diagnostics.items()}


_CAPTURED: weakref.WeakKeyDictionary[nn.Module, OrderedDict[tuple[Any, ...], tuple[CapturedRun, tuple[Any, ...]]]]
_CAPTURED = weakref.WeakKeyDictionary()


def _tensors(model: nn.Module) -> Iterator[Tensor]:
    """The model's parameters and buffers."""
    yield from model.parameters()
    yield from model.buffers()


def run_in_cuda_graph(
    owner: nn.Module,
    model: nn.Module,
    run: Callable[[Tensor, Tensor | None, int], Outputs],
    x: Tensor,
    y: Tensor | None,
    n_steps: int,
    generator: torch.Generator | None,
    settings: tuple[Any, ...] = (),
) -> Outputs:
    """``run(x, y, n_steps)`` replayed from a CUDA graph captured on first use.

    Graphs are cached per ``owner`` (a sampler) and keyed by everything a graph
    bakes in: the model (identity, mode, storage of its parameters and buffers),
    input shapes, dtypes and device, ``n_steps``, the generator, and
    ``settings``, the owner's declared configuration (hashable; for a sampler,
    :meth:`~ebmlib.samplers.Sampler.configuration`). A change of any of them
    captures a new graph; nothing else is looked at.

    Raises
    ------
    RuntimeError
        If CUDA is unavailable.
    ValueError
        If ``x`` (or ``generator``) is not on a CUDA device.

    Examples
    --------
    >>> import torch
    >>> owner, model = torch.nn.Module(), torch.nn.Linear(2, 1)
    >>> run = lambda x, y, n_steps: (x + n_steps, {})
    >>> run_in_cuda_graph(owner, model, run, torch.zeros(2, device="cuda"), None, 3, None)[0]  # doctest: +SKIP
    tensor([3., 3.], device='cuda:0')
    """
    check_cuda_graph_available()
    if x.device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs chains on a CUDA device, got x on {x.device}; move model and x there")
    if generator is not None and generator.device != x.device:
        raise ValueError(f"generator must be on the chains' device {x.device}, got one on {generator.device}")
    key = (
        id(model), model.training, tuple(t.data_ptr() for t in _tensors(model)), settings,
        tuple(x.shape), x.dtype, x.device, None if y is None else (tuple(y.shape), y.dtype),
        n_steps, id(generator),
    )
    cache = _CAPTURED.setdefault(owner, OrderedDict())
    if key in cache:
        cache.move_to_end(key)
        captured = cache[key][0]
    else:
        captured = CapturedRun(run, x, y, n_steps, generator)
        cache[key] = (captured, (model, generator))  # keep them alive: the key holds their ids
        while len(cache) > MAX_GRAPHS_PER_SAMPLER:
            cache.popitem(last=False)
    return captured(x, y)
