"""No host synchronisation inside a sampling or training step.

On a GPU, reading a tensor's value on the host (``.item()``, ``.tolist()``, ``bool(t)``,
``.cpu()``, printing, ...) stalls the pipeline until the device catches up. On CPU such
reads are cheap but leave the same trace in Python, so the tests instrument every way of
reading a value and run each sampler step and each recipe's ``training_step`` under it.

The one allowed exception: ``ebmlib/_checks.py`` validates values (NaN, label range) of
*CPU* tensors only, where a read costs no synchronisation; the last tests show it reads
nothing from tensors on any other device. Where CUDA exists, CUDA's own sync-debug mode
checks the real thing.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor

from ebmlib import _checks
from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.losses import ContrastiveDivergence, CrossEntropy, EnergyRegularization, WeightedSum
from ebmlib.models import MLP, NetworkEnergy
from ebmlib.recipes import EBM, JEM, jem_loss
from ebmlib.samplers import HMC, MALA, ChainState, Langevin, Sampler
from tests.energies import tiny_classifier

VALUE_READS = ["item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__", "__array__"]
DATA_DEPENDENT_SHAPES = ["nonzero", "masked_select", "unique"]  # sync on a GPU to learn the output size
CHECKS_FILE = Path(_checks.__file__).resolve()


class HostSync(Exception):
    pass


@contextlib.contextmanager
def no_host_sync() -> Iterator[list[str]]:
    """Make every value read of a tensor raise ``HostSync``, except CPU-only checks in ``_checks``.

    Yields the list of allowed reads made. Violations are also recorded, so code that swallowed
    the exception still fails on exit.
    """
    allowed: list[str] = []
    violations: list[str] = []

    def guard(name: str, original: Callable) -> Callable:
        def read(tensor: Tensor, *args: object, **kwargs: object) -> object:
            caller = sys._getframe(1).f_code.co_filename
            if name in VALUE_READS and Path(caller).resolve() == CHECKS_FILE and tensor.device.type == "cpu":
                allowed.append(name)
                return original(tensor, *args, **kwargs)
            violations.append(f"Tensor.{name} called from {caller}")
            raise HostSync(violations[-1])
        return read

    def guard_boolean_index(original: Callable) -> Callable:
        def index(tensor: Tensor, key: object, *rest: object) -> object:
            keys = key if isinstance(key, tuple) else (key,)
            if any(isinstance(k, Tensor) and k.dtype == torch.bool for k in keys):
                violations.append("boolean-mask indexing (its output size depends on the data)")
                raise HostSync(violations[-1])
            return original(tensor, key, *rest)
        return index

    with pytest.MonkeyPatch.context() as patch:
        for name in VALUE_READS + DATA_DEPENDENT_SHAPES:
            patch.setattr(Tensor, name, guard(name, getattr(Tensor, name)))
        for name in DATA_DEPENDENT_SHAPES:
            patch.setattr(torch, name, guard(name, getattr(torch, name)))
        for name in ("__getitem__", "__setitem__"):
            patch.setattr(Tensor, name, guard_boolean_index(getattr(Tensor, name)))
        yield allowed
    if violations:
        raise HostSync(f"{len(violations)} host reads, first: {violations[0]}")


def test_the_instrument_catches_reads():
    x = torch.ones(3)
    for read in [lambda: x.sum().item(), lambda: bool(x.all()), lambda: x.tolist(), lambda: float(x[0]),
                 lambda: x.cpu(), lambda: print(x), lambda: x[x > 0], lambda: x.nonzero(), lambda: range(x[0].long())]:
        with pytest.raises(HostSync), no_host_sync():
            read()
    assert bool(x.all()), "the instrument was not removed"
    with pytest.raises(HostSync, match="1 host reads"), no_host_sync():  # a swallowed read still fails
        with contextlib.suppress(HostSync):
            x.sum().item()


SAMPLERS: dict[str, Callable[[], Sampler]] = {
    "langevin": lambda: Langevin(step_size=0.01),
    "langevin_sgld_knobs": lambda: Langevin(step_size=1.0, noise_std=0.01, grad_clip=0.03, clamp=(-1, 1)),
    "langevin_bf16": lambda: Langevin(step_size=0.01, precision="bf16"),
    "mala": lambda: MALA(step_size=0.05),
    "hmc": lambda: HMC(step_size=0.05, n_leapfrog=3),
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
def test_sampler_step_and_sample_read_no_values(name, conditional):
    sampler, model = SAMPLERS[name](), tiny_classifier()
    x0, y = torch.rand(6, 1, 4, 4), (torch.tensor([0, 1, 2, 0, 1, 2]) if conditional else None)
    generator = torch.Generator().manual_seed(0)
    with no_host_sync() as allowed:
        state, info = sampler.step(model, ChainState(x0), y, generator)
        state = sampler.advance(model, state, y, generator)
        sampler.step(model, state, y, generator)
    # the only reads: the CPU-only label-range check of a conditional energy, int(y.min()), int(y.max())
    assert set(allowed) == ({"__int__"} if conditional else set())
    with no_host_sync():
        x, diagnostics = sampler.sample(model, x0, n_steps=3, y=y, generator=generator, return_diagnostics=True)
        sampler.sample(model, x0, n_steps=3, y=y, generator=generator)
    assert x.shape == x0.shape and diagnostics["energy"].shape == (3,)


def recipes() -> dict[str, Callable[[], EBM]]:
    # SGD: torch.optim.Adam keeps its step count in a host tensor and reads it with .item() (a CPU
    # read by design, not a device sync); SGD has no counter, so the test sees only ebmlib's code.
    def ebm() -> EBM:
        model = NetworkEnergy(MLP(2, 1, hidden=8))
        return EBM(model, Langevin(step_size=0.01, n_steps=3), ReplayBuffer(32, UniformInit((2,))),
                   torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9), input_noise_std=0.01)

    def jem(loss: WeightedSum | None = None, **sampler: object) -> Callable[[], EBM]:
        def make() -> EBM:
            model = tiny_classifier()
            return JEM(model, Langevin(step_size=1.0, noise_std=0.01, n_steps=3, clamp=(-1, 1), **sampler),  # type: ignore[arg-type]
                       ReplayBuffer(30, UniformInit((1, 4, 4)), n_classes=3),
                       torch.optim.SGD(model.parameters(), lr=1e-2), loss, input_noise_std=0.03)
        return make

    conditional = WeightedSum({"ce": (1.0, CrossEntropy()), "cd_y": (1.0, ContrastiveDivergence(conditional=True)),
                               "l2_y": (0.1, EnergyRegularization(conditional=True))})
    return {"ebm": ebm, "jem": jem(), "jem_full_loss": jem(jem_loss(p_x_given_y_weight=1, regularization_weight=0.1)),
            "jem_conditional_bf16": jem(conditional, precision="bf16")}


@pytest.mark.parametrize("name", sorted(recipes()))
def test_training_step_reads_no_values(name):
    recipe = recipes()[name]()
    x = torch.rand(8, *recipe.buffer.event_shape)
    y = torch.randint(3, (8,)) if isinstance(recipe, JEM) else None
    generator = torch.Generator().manual_seed(0)
    with no_host_sync() as allowed:
        metrics = recipe.training_step(x, y, generator)
        recipe.training_step(x, y, generator)
    assert set(allowed) <= {"__bool__", "__int__"}  # the CPU-only NaN and label-range checks
    assert all(isinstance(v, Tensor) for v in metrics.values()), "metrics must stay tensors"


def test_checks_read_no_values_off_the_cpu():
    # "meta" tensors have no values: any read would raise. The checks must not try.
    x, y = torch.empty(4, 2, device="meta"), torch.empty(4, dtype=torch.long, device="meta")
    _checks.check_batch(x, "x", (2,))
    _checks.check_labels(y, 4, n_classes=3)
    with pytest.raises(RuntimeError):
        bool(x.sum())  # the premise: reading a meta tensor fails


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's sync-debug mode needs a CUDA device")
@pytest.mark.parametrize("fast", [{}, {"precision": "bf16"}, {"cuda_graph": True}], ids=["eager", "bf16", "graph"])
def test_no_cuda_synchronisation_in_sampling_and_jem_training(fast):
    device = torch.device("cuda")
    model = tiny_classifier().to(device)
    recipe = JEM(model, Langevin(step_size=1.0, noise_std=0.01, n_steps=3, **fast),
                 ReplayBuffer(30, UniformInit((1, 4, 4)), n_classes=3),
                 torch.optim.Adam(model.parameters(), lr=1e-3),
                 jem_loss(p_x_given_y_weight=1.0)).to(device)
    x, y = torch.rand(8, 1, 4, 4, device=device), torch.randint(3, (8,), device=device)
    generator = torch.Generator(device).manual_seed(0)
    recipe.training_step(x, y, generator)  # warm-up (a CUDA graph captures here; capture syncs)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        recipe.training_step(x, y, generator)
        recipe.sampler.sample(model, x, y=y, generator=generator)
    finally:
        torch.cuda.set_sync_debug_mode("default")
