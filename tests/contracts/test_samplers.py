"""Contract suite: every sampler honours the same interface and guarantees."""

from __future__ import annotations

import pytest
import torch

from ebmlib.samplers import HMC, MALA, ChainState, Langevin, Sampler
from tests.energies import gaussian_2d, tiny_classifier

SAMPLERS = {
    "langevin": lambda: Langevin(step_size=0.01, n_steps=4),
    "langevin_sgld_knobs": lambda: Langevin(step_size=1.0, noise_std=0.01, n_steps=4, grad_clip=0.03, clamp=(-1, 1)),
    "mala": lambda: MALA(step_size=0.05, n_steps=4),
    "hmc": lambda: HMC(step_size=0.05, n_leapfrog=3, n_steps=4),
}


@pytest.fixture(params=sorted(SAMPLERS))
def make_sampler(request):
    return SAMPLERS[request.param]


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


def test_same_seed_same_samples_other_seed_other_samples(make_sampler):
    model, x0 = gaussian_2d(), torch.zeros(8, 2)
    a = make_sampler().sample(model, x0, generator=torch.Generator().manual_seed(3))
    b = make_sampler().sample(model, x0, generator=torch.Generator().manual_seed(3))
    c = make_sampler().sample(model, x0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
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
