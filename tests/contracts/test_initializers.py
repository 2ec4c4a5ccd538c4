"""Contract suite: every initializer of fresh chains honours the same interface and guarantees.

The suite finds the initializers itself: every concrete :class:`~ebmlib.buffers.Initializer`
subclass that ``ebmlib.buffers`` or ``ebmlib`` exports, and every one defined in ``ebmlib``
(which must be exported), runs through every test here with each of its example
configurations in ``EXAMPLES``. A new initializer without an example fails
``test_every_initializer_has_an_example_configuration``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import ebmlib
import ebmlib.buffers
from ebmlib.buffers import ClassGaussianInit, GaussianInit, Initializer, ReplayBuffer, UniformInit
from tests.contracts.discovery import exported, library_implementations

EVENT_SHAPE = (1, 4, 4)
N_CLASSES = 3


def class_gaussian() -> ClassGaussianInit:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % N_CLASSES
    data = (torch.rand(60, *EVENT_SHAPE, generator=generator) * 0.5 + 0.2 * labels.view(-1, 1, 1, 1)).clamp(-1, 1)
    return ClassGaussianInit(data, labels, n_classes=N_CLASSES)


EXAMPLES: dict[type[Initializer], dict[str, Callable[[], Initializer]]] = {
    UniformInit: {"uniform": lambda: UniformInit(EVENT_SHAPE), "uniform_box": lambda: UniformInit(EVENT_SHAPE, 0, 2)},
    GaussianInit: {"gaussian": lambda: GaussianInit(EVENT_SHAPE, mean=0.5, std=0.2)},
    ClassGaussianInit: {"class_gaussian": class_gaussian},
}
"""Example configurations of every initializer class, each drawing events of shape ``EVENT_SHAPE``."""


INITIALIZER_CLASSES = sorted(library_implementations(Initializer, ebmlib.buffers, ebmlib),
                             key=lambda cls: cls.__name__)
CASES = {name: make for cls in INITIALIZER_CLASSES for name, make in EXAMPLES.get(cls, {}).items()}


def test_every_initializer_has_an_example_configuration():
    missing = [cls.__name__ for cls in INITIALIZER_CLASSES if not EXAMPLES.get(cls)]
    assert not missing, f"add example configurations of {missing} to EXAMPLES in tests/contracts/test_initializers.py"
    for cls, examples in EXAMPLES.items():
        assert all(type(make()) is cls for make in examples.values()), f"an example of {cls.__name__} is another class"


def test_every_library_initializer_is_exported():
    hidden = set(INITIALIZER_CLASSES) - exported(Initializer, ebmlib.buffers)
    assert not hidden, f"{sorted(c.__name__ for c in hidden)} are Initializers not in ebmlib.buffers.__all__"


def test_discovery_finds_the_known_initializers_and_a_new_one():
    assert {UniformInit, GaussianInit, ClassGaussianInit} <= set(INITIALIZER_CLASSES)

    class Zeros(Initializer):
        def forward(self, n, y=None, generator=None):  # pragma: no cover - never run
            raise NotImplementedError

    assert Zeros not in library_implementations(Initializer, ebmlib.buffers, ebmlib)  # defined in a test
    Zeros.__module__ = "ebmlib.buffers.zeros"  # as if added to the library: found, and without an example
    found = library_implementations(Initializer, ebmlib.buffers, ebmlib)
    assert Zeros in found and not EXAMPLES.get(Zeros)


@pytest.fixture(params=sorted(CASES))
def make_initializer(request):
    return CASES[request.param]


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n", [1, 7])
def test_draws_have_the_event_shape_and_are_finite(make_initializer, n):
    initializer = make_initializer()
    assert initializer.event_shape == EVENT_SHAPE
    x = initializer(n, generator=g())
    assert x.shape == (n, *EVENT_SHAPE) and x.dtype == torch.float32
    assert bool(torch.isfinite(x).all()) and not x.requires_grad


def test_labels_are_accepted(make_initializer):
    y = torch.tensor([0, 1, 2, 2, 1])
    assert make_initializer()(5, y=y, generator=g()).shape == (5, *EVENT_SHAPE)


def test_dtype_follows_to(make_initializer):
    x = make_initializer().to(torch.float64)(3, generator=g())
    assert x.dtype == torch.float64


def test_same_seed_same_draws_other_seed_other_draws(make_initializer):
    initializer = make_initializer()
    a, b, c = (initializer(6, generator=g(seed)) for seed in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_draws_vary_between_chains(make_initializer):
    x = make_initializer()(8, generator=g())
    assert bool((x.flatten(1).std(0) > 0).any()), "every chain starts at the same point"


def test_state_dict_round_trip(make_initializer):
    initializer, clone = make_initializer(), make_initializer()
    clone.load_state_dict(initializer.state_dict())
    assert torch.equal(initializer(4, generator=g(3)), clone(4, generator=g(3)))


def test_no_trainable_parameters(make_initializer):
    assert not any(p.requires_grad for p in make_initializer().parameters())


def test_fills_a_replay_buffer_with_per_class_slots(make_initializer):
    buffer = ReplayBuffer(12, make_initializer(), reinit_prob=1.0, n_classes=N_CLASSES, generator=g())
    x, index = buffer.sample(6, y=torch.tensor([0, 1, 2, 0, 1, 2]), generator=g(1))
    assert buffer.samples.shape == (12, *EVENT_SHAPE) and x.shape == (6, *EVENT_SHAPE)
    assert torch.equal(index // 4, torch.tensor([0, 1, 2, 0, 1, 2]))


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: UniformInit((2,), low=-float("inf")), ValueError, "low must be a finite number, got -inf"),
        (lambda: UniformInit((2,), high=float("nan")), ValueError, "high must be a finite number, got nan"),
        (lambda: GaussianInit((2,), mean=float("nan")), ValueError, "mean must be a finite number, got nan"),
        (lambda: GaussianInit((2,), std=float("inf")), ValueError, "std must be a finite positive number, got inf"),
        (lambda: GaussianInit((2,), std=True), TypeError, r"std must be a real number, got True \(bool\)"),
        (lambda: UniformInit(2), ValueError, r"event_shape must be a tuple of positive integers, got 2"),
        (lambda: UniformInit((2, 0)), ValueError, r"event_shape must be a tuple of positive integers, got \(2, 0\)"),
        (lambda: ClassGaussianInit(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]), n_classes=2.0), TypeError,
         "n_classes must be an integer"),
        (lambda: ClassGaussianInit(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), 2, jitter=float("nan")), ValueError,
         "jitter must be a finite non-negative number"),
    ],
)
def test_bad_settings_are_clear_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()
