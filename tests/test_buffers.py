"""Replay buffer and initialisers."""

from __future__ import annotations

import pytest
import torch

from ebmlib.buffers import ClassGaussianInit, GaussianInit, ReplayBuffer, UniformInit


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sample_update_round_trip():
    buffer = ReplayBuffer(50, UniformInit((1, 3, 3)), reinit_prob=0.0, generator=g())
    x, index = buffer.sample(10, generator=g(1))
    assert x.shape == (10, 1, 3, 3) and index.shape == (10,) and index.dtype == torch.long
    torch.testing.assert_close(x, buffer.samples[index])
    buffer.update(index, torch.full_like(x, 7.0))
    assert bool((buffer.samples[index] == 7.0).all())
    assert int((buffer.samples == 7.0).flatten(1).all(1).sum()) == index.unique().numel()


def test_reinit_probability_one_gives_fresh_chains_and_zero_none():
    buffer = ReplayBuffer(20, UniformInit((2,), low=-1, high=1), reinit_prob=1.0)
    buffer.samples.fill_(5.0)  # out of the initializer's box
    fresh, _ = buffer.sample(20, generator=g())
    assert bool((fresh.abs() <= 1).all())
    buffer.reinit_prob = 0.0
    stored, _ = buffer.sample(20, generator=g())
    assert bool((stored == 5.0).all())


def test_reinit_fraction_matches_probability():
    buffer = ReplayBuffer(10_000, UniformInit((1,), low=0, high=1), reinit_prob=0.05)
    buffer.samples.fill_(5.0)
    x, _ = buffer.sample(10_000, generator=g())
    fraction = float((x != 5.0).float().mean())
    assert abs(fraction - 0.05) < 0.01  # binomial std is 0.0022; 4.5 sigma


def test_per_class_slots():
    buffer = ReplayBuffer(30, UniformInit((2,)), n_classes=3, reinit_prob=0.0)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    _, index = buffer.sample(6, y=y, generator=g())
    assert torch.equal(index // 10, y)


def test_state_dict_round_trip_and_device_following():
    buffer = ReplayBuffer(16, GaussianInit((2,), std=0.5), generator=g())
    clone = ReplayBuffer(16, GaussianInit((2,), std=0.5), generator=g(9))
    assert not torch.equal(clone.samples, buffer.samples)
    clone.load_state_dict(buffer.state_dict())
    assert torch.equal(clone.samples, buffer.samples)
    assert buffer.to(torch.float64).samples.dtype == torch.float64


def test_same_seed_same_draws():
    a = ReplayBuffer(16, UniformInit((2,)), generator=g())
    b = ReplayBuffer(16, UniformInit((2,)), generator=g())
    assert torch.equal(a.sample(8, generator=g(2))[0], b.sample(8, generator=g(2))[0])


def test_reinitialize_replaces_everything():
    buffer = ReplayBuffer(8, UniformInit((2,), low=0, high=1))
    buffer.samples.fill_(3.0)
    buffer.reinitialize(g())
    assert bool((buffer.samples <= 1).all())


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: ReplayBuffer(0, UniformInit((2,))), ValueError, "empty"),
        (lambda: ReplayBuffer(4, UniformInit((2,))).sample(5), ValueError, "capacity=4"),
        (lambda: ReplayBuffer(4, UniformInit((2,)), reinit_prob=1.5), ValueError, "reinit_prob"),
        (lambda: ReplayBuffer(4, UniformInit((2,))).update(torch.arange(2), torch.zeros(2, 3)), ValueError, "shape"),
        (lambda: ReplayBuffer(6, UniformInit((2,)), n_classes=3).sample(2, y=torch.tensor([0, 3])), ValueError, "y"),
        (lambda: ReplayBuffer(6, UniformInit((2,)), n_classes=3).sample(2, y=torch.tensor([0.0, 1.0])), TypeError,
         "int64"),
        (lambda: UniformInit((2,), low=1, high=0), ValueError, "low < high"),
        (lambda: ReplayBuffer(8.5, UniformInit((2,))), TypeError, r"capacity must be an integer >= 1, got 8\.5"),
        (lambda: ReplayBuffer(True, UniformInit((2,))), TypeError, "capacity must be an integer >= 1, got True"),
        (lambda: ReplayBuffer(4, UniformInit((2,)), reinit_prob=float("nan")), ValueError, "reinit_prob"),
        (lambda: ReplayBuffer(4, UniformInit((2,)), reinit_prob=True), TypeError, "reinit_prob must be a probability"),
        (lambda: ReplayBuffer(6, UniformInit((2,)), n_classes=1.5), TypeError, "n_classes must be an integer"),
        (lambda: ReplayBuffer(4, UniformInit((2,))).sample(2.0), TypeError, "batch_size must be an integer"),
    ],
)
def test_bad_inputs_are_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_class_gaussian_init_fits_each_class():
    gen = g()
    labels = torch.arange(4000) % 2
    data = torch.randn(4000, 3, generator=gen) * 0.1 + labels.unsqueeze(1).float() * 0.5 - 0.25
    init = ClassGaussianInit(data, labels, n_classes=2, clamp=None)
    for k, centre in ((0, -0.25), (1, 0.25)):
        draws = init(2000, y=torch.full((2000,), k), generator=gen)
        # sample mean has std 0.1/sqrt(2000) = 0.0022; sample std within 10%
        torch.testing.assert_close(draws.mean(0), torch.full((3,), centre), atol=0.01, rtol=0)
        torch.testing.assert_close(draws.std(0), torch.full((3,), 0.1), atol=0.01, rtol=0)
    with pytest.raises(ValueError, match="class 2"):
        ClassGaussianInit(data, labels, n_classes=3)
