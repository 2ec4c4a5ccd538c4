"""Property tests (hypothesis) over batch sizes, event shapes and dtypes."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ebmlib.buffers import GaussianInit, ReplayBuffer, UniformInit
from ebmlib.losses import (
    Classification,
    ContrastiveDivergence,
    CrossEntropy,
    Energies,
    EnergyBatch,
    EnergyRegularization,
    WeightedSum,
)
from ebmlib.samplers import HMC, MALA, Langevin
from tests.energies import GaussianEnergy

batch_sizes = st.integers(min_value=1, max_value=9)
event_shapes = st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=3).map(tuple)
dtypes = st.sampled_from([torch.float32, torch.float64])
samplers = st.sampled_from([
    lambda: Langevin(step_size=0.01, n_steps=2),
    lambda: Langevin(step_size=1.0, noise_std=0.01, grad_clip=0.1, clamp=(-1.0, 1.0), n_steps=2),
    lambda: MALA(step_size=0.05, n_steps=2),
    lambda: HMC(step_size=0.05, n_leapfrog=2, n_steps=2),
])
seeds = st.integers(min_value=0, max_value=2**31 - 1)
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


@SETTINGS
@given(batch_sizes, event_shapes, dtypes, samplers, seeds)
def test_samplers_keep_shape_dtype_finiteness_and_seed_determinism(batch, event, dtype, make, seed):
    model = GaussianEnergy(torch.zeros(event), torch.ones(event)).to(dtype)
    x0 = torch.randn((batch, *event), dtype=dtype, generator=torch.Generator().manual_seed(seed))
    a = make().sample(model, x0, generator=torch.Generator().manual_seed(seed))
    b = make().sample(model, x0, generator=torch.Generator().manual_seed(seed))
    assert a.shape == x0.shape and a.dtype == dtype and not a.requires_grad
    assert bool(torch.isfinite(a).all()) and torch.equal(a, b)
    assert model.mean.grad is None


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 40), event_shapes, dtypes, st.floats(0.0, 1.0), seeds)
def test_buffer_sample_update_consistency(capacity, batch, event, dtype, reinit_prob, seed):
    batch = min(batch, capacity)
    g = torch.Generator().manual_seed(seed)
    buffer = ReplayBuffer(capacity, GaussianInit(event), reinit_prob=reinit_prob, generator=g).to(dtype)
    x, index = buffer.sample(batch, generator=g)
    assert x.shape == (batch, *event) and x.dtype == dtype
    assert bool(((index >= 0) & (index < capacity)).all())
    new = torch.randn(x.shape, dtype=dtype, generator=g)
    buffer.update(index, new)
    # with repeated slots the last write wins; each slot holds one of the values written to it
    for i in range(batch):
        written = new[index == index[i]]
        assert any(torch.equal(buffer.samples[index[i]], w) for w in written)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 40), event_shapes, seeds)
def test_per_class_buffer_draws_from_the_requested_class(n_classes, slots_per_class, event, seed):
    capacity = n_classes * slots_per_class
    g = torch.Generator().manual_seed(seed)
    buffer = ReplayBuffer(capacity, UniformInit(event), n_classes=n_classes, reinit_prob=0.0, generator=g)
    y = torch.randint(n_classes, (min(capacity, 7),), generator=g)
    _, index = buffer.sample(len(y), y=y, generator=g)
    assert torch.equal(index // slots_per_class, y)


@SETTINGS
@given(st.integers(1, 9), st.integers(1, 9), st.integers(2, 6), dtypes, seeds)
def test_losses_are_finite_scalars_with_finite_gradients(b, m, k, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    leaf = lambda *s: torch.randn(*s, dtype=dtype, generator=g).requires_grad_(True)  # noqa: E731
    batch = EnergyBatch(Energies(positive=leaf(b), negative=leaf(m)),
                        Classification(logits=leaf(b, k), labels=torch.randint(k, (b,), generator=g)))
    loss = WeightedSum({"ce": (1.0, CrossEntropy()), "cd": (1.0, ContrastiveDivergence()),
                        "l2": (0.1, EnergyRegularization())})
    value, metrics = loss(batch)
    value.backward()
    assert value.shape == () and value.dtype == dtype and bool(torch.isfinite(value))
    assert all(bool(torch.isfinite(v)) for v in metrics.values())
    assert all(bool(torch.isfinite(t.grad).all()) for t in (batch[Energies].positive, batch[Energies].negative,
                                                              batch[Classification].logits))
    # the CD term is exactly mean(E+) - mean(E-), whatever the sizes
    expected_cd = batch[Energies].positive.mean() - batch[Energies].negative.mean()
    torch.testing.assert_close(metrics["loss/cd"], expected_cd.detach())
