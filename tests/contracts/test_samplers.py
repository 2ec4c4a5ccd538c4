"""Contract suite: every sampler honours the same interface and guarantees.

The suite finds the samplers itself: every concrete :class:`~ebmlib.samplers.Sampler`
subclass that ``ebmlib.samplers`` or ``ebmlib`` exports, and every one defined in
``ebmlib`` (which must be exported), runs through every test here with each of its
example configurations in ``EXAMPLES``. A new sampler without an example fails
``test_every_sampler_has_an_example_configuration``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest
import torch

import ebmlib
import ebmlib.samplers
from ebmlib.models import EnergyModel, IsingEnergy
from ebmlib.samplers import (
    DMALA,
    HMC,
    MALA,
    NUTS,
    AnnealedLangevin,
    ChainState,
    Gibbs,
    GibbsWithGradients,
    GradientDescent,
    Langevin,
    ParallelTempering,
    Sampler,
    UnderdampedLangevin,
)
from tests.contracts.discovery import concrete_subclasses, exported, library_implementations
from tests.energies import gaussian_2d, tiny_classifier

EXAMPLES: dict[type[Sampler], dict[str, dict[str, Any]]] = {
    Langevin: {
        "langevin": dict(step_size=0.01, n_steps=4),
        "langevin_sgld_knobs": dict(step_size=1.0, noise_std=0.01, n_steps=4, grad_clip=0.03, clamp=(-1, 1)),
    },
    MALA: {"mala": dict(step_size=0.05, n_steps=4)},
    HMC: {"hmc": dict(step_size=0.05, n_leapfrog=3, n_steps=4)},
    AnnealedLangevin: {"annealed_langevin": dict(step_size=0.01, temperatures=[4.0, 1.0], steps_per_level=2)},
    UnderdampedLangevin: {"underdamped_langevin": dict(step_size=0.05, friction=1.0, n_steps=4)},
    ParallelTempering: {"parallel_tempering": dict(base=MALA(step_size=0.05), temperatures=[1.0, 3.0], n_steps=4)},
    # NUTS's default early_exit=True reads one boolean per tree doubling, by design (documented, and pinned down in
    # tests/test_samplers_reference.py); the contract runs the configuration that reads nothing.
    NUTS: {"nuts": dict(step_size=0.5, max_tree_depth=3, early_exit=False, n_steps=4)},
    # Samplers of discrete data (DISCRETE below): bits here, one-hot vectors too in the discrete tests at the end.
    Gibbs: {"gibbs": dict(n_steps=4), "gibbs_random_scan": dict(scan="random", n_steps=4)},
    GibbsWithGradients: {"gibbs_with_gradients": dict(n_steps=4)},
    DMALA: {"dmala": dict(step_size=0.5, n_steps=4)},
    GradientDescent: {"gradient_descent": dict(step_size=0.1, n_steps=4),
                      "gradient_descent_nesterov": dict(step_size=0.1, n_steps=4, momentum=0.5, nesterov=True)},
}
"""Keyword arguments of example configurations of every sampler class, each with 4 steps by default."""


SAMPLER_CLASSES = sorted(library_implementations(Sampler, ebmlib.samplers, ebmlib), key=lambda cls: cls.__name__)
CASES = {name: functools.partial(cls, **kwargs) for cls in SAMPLER_CLASSES
         for name, kwargs in EXAMPLES.get(cls, {}).items()}


def missing_examples(classes: list[type]) -> list[str]:
    return sorted(cls.__name__ for cls in classes if not EXAMPLES.get(cls))


def test_every_sampler_has_an_example_configuration():
    missing = missing_examples(SAMPLER_CLASSES)
    assert not missing, f"add example configurations of {missing} to EXAMPLES in tests/contracts/test_samplers.py"


def test_every_library_sampler_is_exported():
    hidden = set(SAMPLER_CLASSES) - exported(Sampler, ebmlib.samplers)
    assert not hidden, f"{sorted(c.__name__ for c in hidden)} are Samplers in ebmlib but not in ebmlib.samplers.__all__"


def test_discovery_finds_the_known_samplers_and_a_new_one():
    assert {Langevin, MALA, HMC, AnnealedLangevin, UnderdampedLangevin, ParallelTempering} <= set(SAMPLER_CLASSES)

    class Brand(Sampler):  # a subclass defined outside ebmlib (here, in a test) is not the library's
        def step(self, model, state, y=None, generator=None):  # pragma: no cover - never run
            raise NotImplementedError

    assert Brand in concrete_subclasses(Sampler)
    assert Brand not in library_implementations(Sampler, ebmlib.samplers, ebmlib)
    Brand.__module__ = "ebmlib.samplers.brand"  # as if added to the library: found, and flagged without an example
    found = library_implementations(Sampler, ebmlib.samplers, ebmlib)
    assert Brand in found and "Brand" in missing_examples(sorted(found, key=lambda cls: cls.__name__))


DISCRETE = {Gibbs, GibbsWithGradients, DMALA}
"""Samplers of discrete data: their chains hold bits in {0, 1} (or, with ``one_hot=True``, one-hot vectors) and
their ``sample`` refuses other starting points. They run every test here whose chains start at bits (all zeros is
a start of bits), except those in ``CONTINUOUS_STARTS``, which they skip with the reason given; the discrete tests
at the end of this file check the same guarantees for them from discrete starts, on bits and on one-hot data."""

CONTINUOUS_STARTS = {
    "test_image_shaped_class_conditional_chains": "this test starts chains at uniform noise",
    "test_no_parameter_gradients_and_mode_untouched": "this test starts chains at uniform noise",
    "test_zero_steps_returns_start": "this test starts chains at Gaussian noise",
}
"""Tests whose chains start at continuous points, which samplers in ``DISCRETE`` skip: test name -> why."""


@pytest.fixture(params=sorted(CASES))
def make_sampler(request):
    make = CASES[request.param]
    reason = CONTINUOUS_STARTS.get(request.function.__name__)
    if reason is not None and make.func in DISCRETE:
        pytest.skip(f"{make.func.__name__} samples discrete data and {reason}; test_discrete_* check it instead")
    return make


def bad_numbers(kwargs: dict[str, Any]) -> list[tuple[str, object, type[Exception], str]]:
    """For each number (or sequence of numbers) among an example's arguments: a bad value, the error and a message.

    Integers (counts) get a float and a bool; floats get Inf and NaN; sequences of numbers get a NaN first element.
    """
    bad: list[tuple[str, object, type[Exception], str]] = []
    for name, value in kwargs.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            bad += [(name, 2.5, TypeError, rf"{name} must be an integer >= \d+, got 2\.5 \(float\)"),
                    (name, True, TypeError, rf"{name} must be an integer >= \d+, got True \(bool\)")]
        elif isinstance(value, float):
            bad += [(name, math.inf, ValueError, rf"{name} must be a finite .*got inf"),
                    (name, math.nan, ValueError, rf"{name} must be .*got nan"),
                    (name, True, TypeError, rf"{name} must be a real number, got True \(bool\)")]
        elif isinstance(value, (tuple, list)) and value and all(isinstance(v, (int, float)) for v in value):
            bad.append((name, type(value)([math.nan, *value[1:]]), ValueError, rf"{name} must .*nan"))
    return bad


BAD_NUMBERS = {f"{case}-{name}={bad!r}": (cls, kwargs, name, bad, error, message)
               for cls in SAMPLER_CLASSES for case, kwargs in EXAMPLES.get(cls, {}).items()
               for name, bad, error, message in bad_numbers(kwargs)}


@pytest.mark.parametrize("case", sorted(BAD_NUMBERS))
def test_every_numeric_argument_is_checked(case):
    # Finite numbers and integer counts (bool is not a count) are checked at construction, with
    # an error naming the argument, for every argument of every sampler's example configuration.
    cls, kwargs, name, bad, error, message = BAD_NUMBERS[case]
    with pytest.raises(error, match=message):
        cls(**{**kwargs, name: bad})


def test_bad_numbers_cover_every_sampler():
    assert {cls for cls, *_ in BAD_NUMBERS.values()} == {cls for cls in SAMPLER_CLASSES if EXAMPLES.get(cls)}


def test_is_a_sampler_with_default_steps(make_sampler):
    sampler = make_sampler()
    assert isinstance(sampler, Sampler)
    assert sampler.n_steps == 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_detached(make_sampler, dtype):
    model = gaussian_2d().to(dtype)
    x0 = torch.zeros(6, 2, dtype=dtype)
    x = make_sampler().sample(model, x0, generator=torch.Generator().manual_seed(0))
    assert x.shape == x0.shape and x.dtype == dtype
    assert not x.requires_grad and x.grad_fn is None
    assert not torch.equal(x, x0), "chains did not move"
    assert torch.equal(x0, torch.zeros(6, 2, dtype=dtype)), "input was modified in place"


def test_image_shaped_class_conditional_chains(make_sampler):
    model = tiny_classifier()
    y = torch.tensor([0, 1, 2, 0, 1])
    x = make_sampler().sample(model, torch.rand(5, 1, 4, 4), y=y, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 4, 4)


def test_no_parameter_gradients_and_mode_untouched(make_sampler):
    model = tiny_classifier()
    for train in (True, False):
        model.train(train)
        make_sampler().sample(model, torch.rand(4, 1, 4, 4), generator=torch.Generator().manual_seed(0))
        assert model.training is train
        assert all(p.grad is None for p in model.parameters())


DETERMINISTIC = {GradientDescent: "gradient descent draws no random number: its chains depend on their starts only"}
"""Samplers that draw nothing from the generator: sampler class -> why. For them the test below checks the
stronger guarantee instead of "other seed, other samples": another seed gives exactly the same samples."""


def test_same_seed_same_samples_other_seed_other_samples(make_sampler):
    model, x0 = gaussian_2d(), torch.zeros(8, 2)
    a = make_sampler().sample(model, x0, generator=torch.Generator().manual_seed(3))
    b = make_sampler().sample(model, x0, generator=torch.Generator().manual_seed(3))
    c = make_sampler().sample(model, x0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    if make_sampler.func in DETERMINISTIC:
        assert torch.equal(a, c), DETERMINISTIC[make_sampler.func]
        return
    assert not torch.equal(a, c)


def test_step_returns_state_and_diagnostics(make_sampler):
    model, x0 = gaussian_2d(), torch.zeros(5, 2)
    state, info = make_sampler().step(model, ChainState(x0), generator=torch.Generator().manual_seed(0))
    assert state.position.shape == (5, 2)
    assert info.energy.shape == (5,)
    assert info.grad_norm.shape == (5,)
    x, diagnostics = make_sampler().sample(model, x0, n_steps=3, return_diagnostics=True)
    assert {"energy", "grad_norm"} <= set(diagnostics)
    assert all(v.shape == (3,) for v in diagnostics.values())
    # energy at the start of step 1 is E(0) = 0.5 * (1/0.5 + 4/2) = 2
    torch.testing.assert_close(diagnostics["energy"][0], torch.tensor(2.0))


def test_state_dict_round_trip(make_sampler):
    sampler = make_sampler()
    clone = make_sampler()
    clone.load_state_dict(sampler.state_dict())
    model, x0 = gaussian_2d(), torch.zeros(4, 2)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(sampler.sample(model, x0, generator=g1), clone.sample(model, x0, generator=g2))


def test_zero_steps_returns_start(make_sampler):
    x0 = torch.randn(3, 2)
    assert torch.equal(make_sampler().sample(gaussian_2d(), x0, n_steps=0), x0)


@pytest.mark.parametrize("bad", ["scalar", "column"])
def test_model_with_wrong_energy_shape_is_a_clear_error(make_sampler, bad):
    class Bad(torch.nn.Module):
        def forward(self, x, y=None):
            e = x.pow(2).sum(1)
            return e.sum() if bad == "scalar" else e.unsqueeze(1)

    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        make_sampler().sample(Bad(), torch.zeros(4, 2))


def test_bad_inputs_are_clear_errors(make_sampler):
    sampler, model = make_sampler(), gaussian_2d()
    with pytest.raises(TypeError, match="floating-point"):
        sampler.sample(model, torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="y must have shape"):
        sampler.sample(model, torch.zeros(4, 2), y=torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"n_steps must be an integer >= 0, got 2\.5 \(float\)"):
        sampler.sample(model, torch.zeros(4, 2), n_steps=2.5)
    with pytest.raises(ValueError, match="n_steps must be an integer >= 0, got -1"):
        sampler.sample(model, torch.zeros(4, 2), n_steps=-1)


def test_langevin_invariant_zero_gradient_zero_noise_stays_put():
    class Flat(torch.nn.Module):
        def forward(self, x, y=None):
            return (0 * x).sum(1)

    x0 = torch.randn(5, 3)
    assert torch.equal(Langevin(step_size=0.5, noise_std=0.0, n_steps=7).sample(Flat(), x0), x0)


def test_langevin_update_rule_is_the_documented_formula():
    model, x0 = gaussian_2d(), torch.tensor([[3.0, 3.0]])
    sampler = Langevin(step_size=0.1, noise_std=0.2, n_steps=1, grad_clip=1.0, clamp=(-2.5, 2.5))
    x = sampler.sample(model, x0, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(1, 2, generator=torch.Generator().manual_seed(0))
    grad = (x0 - model.mean.detach()) / model.variance  # (4, 2.5) -> clipped to (1, 1)
    expected = (x0 - 0.1 * grad.clamp(-1, 1) + 0.2 * noise).clamp(-2.5, 2.5)
    torch.testing.assert_close(x, expected)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Langevin(step_size=0.0), "step_size must be positive"),
        (lambda: Langevin(step_size=0.1, noise_std=-1.0), "noise_std must be non-negative"),
        (lambda: Langevin(step_size=0.1, clamp=(1.0, -1.0)), "clamp"),
        (lambda: MALA(step_size=-1.0), "step_size must be positive"),
        (lambda: HMC(step_size=0.1, n_leapfrog=0), "n_leapfrog"),
        (lambda: Langevin(step_size=0.1, n_steps=0), "n_steps"),
    ],
)
def test_bad_configuration_is_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("sampler", [MALA(step_size=0.5), HMC(step_size=0.3, n_leapfrog=4)])
def test_metropolis_samplers_report_acceptance(sampler):
    _, diagnostics = sampler.sample(gaussian_2d(), torch.zeros(64, 2), n_steps=5,
                                    generator=torch.Generator().manual_seed(0), return_diagnostics=True)
    rate = diagnostics["acceptance_rate"]
    assert rate.shape == (5,) and bool(((rate >= 0) & (rate <= 1)).all())
    assert float(rate.mean()) > 0.3  # moderate steps on a smooth Gaussian are mostly accepted


def test_configuration_declares_every_setting(make_sampler):
    # The CUDA-graph cache key and the repr come from the declared `settings`, never from vars(sampler);
    # here (and only here) reflection checks that the declaration misses no plain setting of the instance.
    sampler = make_sampler()
    plain = (bool, int, float, str, tuple, list, type(None))
    attributes = {name for name, value in vars(sampler).items()
                  if not name.startswith("_") and name != "training" and isinstance(value, plain)}  # nn.Module's mode
    declared = {name for name, _ in sampler.configuration()}
    assert "settings" in vars(type(sampler)), f"{type(sampler).__name__} must declare its own settings"
    assert attributes <= declared, f"{type(sampler).__name__}.settings misses {sorted(attributes - declared)}"
    hash(sampler.configuration())


class NaNEnergy(torch.nn.Module):
    """A broken energy model: NaN energies (and gradients) everywhere."""

    def forward(self, x, y=None):
        return x.flatten(1).sum(1) * float("nan")


def test_check_finite_names_the_model_that_returned_nan(make_sampler):
    sampler = make_sampler()
    sampler.check_finite = True
    with pytest.raises(FloatingPointError, match=rf"{type(sampler).__name__}\.sample: 4 of 4 chains hold NaN or Inf "
                                                 r"after 4 steps; the energy model NaNEnergy returned non-finite"):
        sampler.sample(NaNEnergy(), torch.zeros(4, 2), generator=torch.Generator().manual_seed(0))
    sampler.check_finite = False  # off (the default): no check
    sampler.sample(NaNEnergy(), torch.zeros(4, 2), generator=torch.Generator().manual_seed(0))


VALUE_READS = ["item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"]


@pytest.mark.parametrize("check_finite, reads", [(False, 0), (True, 1)])
def test_check_finite_reads_one_value_per_call_never_per_step(make_sampler, monkeypatch, check_finite, reads):
    import sys
    from pathlib import Path

    import ebmlib._checks

    checks_file = Path(ebmlib._checks.__file__).resolve()  # its CPU-only input checks are not the sampler's
    made: list[str] = []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def read(tensor, *args, **kwargs):
            if Path(sys._getframe(1).f_code.co_filename).resolve() != checks_file:
                made.append(name)
            return original(tensor, *args, **kwargs)
        return read

    sampler = make_sampler()
    sampler.check_finite = check_finite
    model, x0 = gaussian_2d(), torch.zeros(6, 2)
    for name in VALUE_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    sampler.sample(model, x0, n_steps=4, generator=torch.Generator().manual_seed(0))
    assert len(made) == reads, made


# ------------------------------------------------------------------------------ samplers of discrete data
DISCRETE_CASES = {f"{name}-{data}": (functools.partial(make, one_hot=data == "one_hot"), data)
                  for name, make in CASES.items() if make.func in DISCRETE for data in ("bits", "one_hot")}
"""Every example of a sampler in ``DISCRETE``, on bits and on one-hot data (``one_hot=True``)."""


class Pairwise(EnergyModel):
    """A fixed random pairwise energy ``E(x) = -x^T W x - b^T x`` of the flattened sample: bits or one-hot vectors."""

    def __init__(self, n_features: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", torch.randn(n_features, n_features, generator=generator) / 2)
        self.register_buffer("bias", torch.randn(n_features, generator=generator))

    def energy(self, x, y=None):
        flat = x.flatten(1)
        return -((flat @ self.weight.to(x.dtype)) * flat).sum(1) - flat @ self.bias.to(x.dtype)


def discrete_start(data: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0):
    """Random bits, or random one-hot vectors over the last dimension, of ``shape``."""
    generator = torch.Generator().manual_seed(seed)
    if data == "bits":
        return torch.randint(0, 2, shape, generator=generator).to(dtype)
    index = torch.randint(0, shape[-1], shape[:-1], generator=generator)
    return torch.nn.functional.one_hot(index, shape[-1]).to(dtype)


def discrete_problem(data: str, dtype: torch.dtype = torch.float32) -> tuple[EnergyModel, torch.Tensor]:
    """An energy and 6 starting points: a 3x3 Ising model on bits; 3 sites of 4 categories, one-hot."""
    if data == "bits":
        return IsingEnergy(3, coupling=0.4, field=0.2).to(dtype), discrete_start(data, (6, 3, 3), dtype)
    return Pairwise(12).to(dtype), discrete_start(data, (6, 3, 4), dtype)


def is_discrete(x: torch.Tensor, data: str) -> bool:
    bits = bool(((x == 0) | (x == 1)).all())
    return bits if data == "bits" else bits and bool((x.sum(-1) == 1).all())


@pytest.fixture(params=sorted(DISCRETE_CASES))
def discrete_case(request):
    return DISCRETE_CASES[request.param]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_discrete_chains_keep_shape_dtype_and_stay_discrete(discrete_case, dtype):
    make, data = discrete_case
    model, x0 = discrete_problem(data, dtype)
    start = x0.clone()
    x = make().sample(model, x0, generator=torch.Generator().manual_seed(0))
    assert x.shape == x0.shape and x.dtype == dtype
    assert not x.requires_grad and x.grad_fn is None
    assert is_discrete(x, data), "chains left {0, 1} (or their one-hot vectors)"
    assert not torch.equal(x, x0), "chains did not move"
    assert torch.equal(x0, start), "input was modified in place"


def test_discrete_same_seed_same_samples_other_seed_other_samples_and_state_dict(discrete_case):
    make, data = discrete_case
    model, x0 = discrete_problem(data)
    clone = make()
    clone.load_state_dict(make().state_dict())
    a = make().sample(model, x0, generator=torch.Generator().manual_seed(3))
    b = clone.sample(model, x0, generator=torch.Generator().manual_seed(3))
    c = make().sample(model, x0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_discrete_step_carries_the_energy_of_its_position(discrete_case):
    # Samplers keep the energy (and gradient) of the accepted point for the next step: it must be the right one.
    make, data = discrete_case
    model, x0 = discrete_problem(data, torch.float64)
    state, info = make().step(model, ChainState(x0), generator=torch.Generator().manual_seed(0))
    assert info.energy.shape == (6,) and info.grad_norm.shape == (6,)
    torch.testing.assert_close(info.energy, model(x0))
    torch.testing.assert_close(state.energy, model(state.position))
    if state.grad is not None:
        torch.testing.assert_close(state.grad, -model.score(state.position))


def test_discrete_image_shaped_class_conditional_chains(discrete_case):
    make, data = discrete_case  # one-hot: the 4x4 image's rows are 4 sites of 4 categories
    y = torch.tensor([0, 1, 2, 0, 1])
    x = make().sample(tiny_classifier(), discrete_start(data, (5, 1, 4, 4)), y=y,
                      generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 4, 4) and is_discrete(x, data)


def test_discrete_no_parameter_gradients_and_mode_untouched(discrete_case):
    make, data = discrete_case
    model = tiny_classifier()
    for train in (True, False):
        model.train(train)
        make().sample(model, discrete_start(data, (4, 1, 4, 4)), generator=torch.Generator().manual_seed(0))
        assert model.training is train
        assert all(p.grad is None for p in model.parameters())


def test_discrete_zero_steps_returns_start(discrete_case):
    make, data = discrete_case
    model, x0 = discrete_problem(data)
    assert torch.equal(make().sample(model, x0, n_steps=0), x0)


def test_discrete_starts_that_are_not_discrete_are_clear_errors(discrete_case):
    make, data = discrete_case
    model, x0 = discrete_problem(data)
    name = make.func.__name__
    if data == "bits":
        with pytest.raises(ValueError, match=rf"x must hold bits in \{{0, 1\}} \({name} samples binary data\)"):
            make().sample(model, x0 * 0.5)
    else:
        with pytest.raises(ValueError, match=rf"x must hold one-hot vectors .*\({name} with one_hot=True"):
            make().sample(model, torch.ones_like(x0))
        with pytest.raises(ValueError, match=r"x must have shape \(B, \*sites, K\)"):
            make().sample(model, x0.flatten(1))
