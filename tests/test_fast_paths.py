"""The opt-in fast paths (bf16 autocast, compiled gradient, CUDA graph) sample what the default path samples.

Speed is measured only in benchmarks/; these tests check correctness and the guards.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from ebmlib.models import ClassifierEnergy, EnergyModel, SwishCNN
from ebmlib.samplers import HMC, MALA, ChainState, Langevin, energy_and_grad
from tests.energies import gaussian_2d, tiny_classifier

MEAN, VARIANCE = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


class LinearGaussian(EnergyModel):
    """E(x) = 0.5 ||A (x - mean)||^2 with A = diag(variance^-1/2), computed by an nn.Linear
    (so autocast really runs it in bf16): the target is N(mean, diag(variance))."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.diag(VARIANCE.rsqrt()))
            self.linear.bias.copy_(-self.linear.weight @ MEAN)

    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return 0.5 * self.linear(x).float().pow(2).sum(1)


def mnist_energy(scale_head: float = 30.0) -> ClassifierEnergy:
    """The MNIST example's network; the head is scaled up so energies differ between inputs."""
    torch.manual_seed(0)
    model = ClassifierEnergy(SwishCNN(channels=1, width=32, n_outputs=10), n_classes=10)
    with torch.no_grad():
        model.network[-1].weight.mul_(scale_head)
    return model


def images(n: int, seed: int = 1) -> Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- guards -----------------------------------------------------------------------------------


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(ValueError, match=r"precision must be one of \('full', 'bf16'\), got 'fp16'"):
        Langevin(step_size=0.1, precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        energy_and_grad(gaussian_2d(), torch.zeros(2, 2), precision="half")


def test_cuda_graph_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"cuda_graph=True needs CUDA.*is_available\(\) is False"):
        Langevin(step_size=0.1, cuda_graph=True)


def test_cuda_graph_with_chains_on_the_cpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # construct as if on a GPU machine
    sampler = Langevin(step_size=0.1, n_steps=2, cuda_graph=True)
    with pytest.raises(ValueError, match="cuda_graph=True needs chains on a CUDA device, got x on cpu"):
        sampler.sample(gaussian_2d(), torch.zeros(4, 2))


def test_fast_path_settings_show_in_repr():
    text = repr(Langevin(step_size=0.1, precision="bf16", compile_gradient=True))
    assert "precision='bf16'" in text and "compile_gradient=True" in text and "cuda_graph=False" in text
    text = repr(HMC(step_size=0.1, n_leapfrog=3, compile_gradient=True))
    assert "n_leapfrog=3" in text and "compile_gradient=True" in text and "precision='full'" in text


@pytest.mark.parametrize("make", [MALA, HMC], ids=["mala", "hmc"])
def test_metropolis_samplers_refuse_bf16_with_a_clear_error(make):
    with pytest.raises(ValueError, match=rf"{make.__name__} supports precision in \('full',\), got 'bf16': its result "
                                         "depends on energy values"):
        make(step_size=0.1, precision="bf16")


@pytest.mark.parametrize("flag", ["compile_gradient", "cuda_graph", "check_finite"])
def test_fast_path_flags_must_be_booleans(flag):
    with pytest.raises(TypeError, match=rf"{flag} must be True or False, got 'yes' \(str\)"):
        MALA(step_size=0.1, **{flag: "yes"})


def test_cuda_graph_cache_key_is_the_declared_configuration():
    sampler = Langevin(step_size=0.1, n_steps=3, clamp=(-1, 1))
    key = sampler.configuration()
    assert [name for name, _ in key] == ["step_size", "noise_std", "n_steps", "grad_clip", "clamp", "precision",
                                         "compile_gradient", "cuda_graph", "check_finite"]
    assert dict(key)["clamp"] == (-1.0, 1.0) and hash(key) is not None
    sampler.note = "not a setting"  # an undeclared attribute is not read: no reflection over vars(sampler)
    assert sampler.configuration() == key
    sampler.step_size = 0.2
    assert sampler.configuration() != key


def test_cuda_graph_needs_a_sampler_that_declares_its_settings(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # construct as if on a GPU machine

    class Undeclared(Langevin):
        pass

    class Declared(Langevin):
        settings = Langevin.settings

    with pytest.raises(TypeError, match=r"cuda_graph=True needs Undeclared to declare its own `settings`"):
        Undeclared(step_size=0.1, cuda_graph=True)
    assert Declared(step_size=0.1, cuda_graph=True).cuda_graph


# --- the diagnostics-free hot path makes the same moves -------------------------------------------


@pytest.mark.parametrize(
    "make",
    [lambda: Langevin(step_size=0.05, grad_clip=0.5, clamp=(-3, 3)), lambda: MALA(step_size=0.05),
     lambda: HMC(step_size=0.05, n_leapfrog=3)],
    ids=["langevin", "mala", "hmc"],
)
def test_advance_makes_the_same_move_as_step(make):
    sampler, model, x0 = make(), tiny_classifier(), torch.rand(6, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    stepped, _ = sampler.step(model, ChainState(x0), y, torch.Generator().manual_seed(5))
    advanced = sampler.advance(model, ChainState(x0), y, torch.Generator().manual_seed(5))
    assert torch.equal(stepped.position, advanced.position)
    plain = sampler.sample(model, x0, n_steps=4, y=y, generator=torch.Generator().manual_seed(2))
    with_diagnostics, _ = sampler.sample(model, x0, n_steps=4, y=y, generator=torch.Generator().manual_seed(2),
                                         return_diagnostics=True)
    assert torch.equal(plain, with_diagnostics)


# --- bf16 autocast ----------------------------------------------------------------------------


def test_bf16_really_computes_in_bf16_and_matches_full_precision_on_the_mnist_network():
    model, x = mnist_energy(), images(32)
    energy, grad = energy_and_grad(model, x)
    energy_bf16, grad_bf16 = energy_and_grad(model, x, precision="bf16")
    assert energy_bf16.dtype == grad_bf16.dtype == torch.float32
    assert not torch.equal(energy_bf16, energy), "autocast had no effect"
    # bf16 keeps 8 significant bits: rounding the energy alone costs up to 0.4%, rounding the inputs
    # of four convolutions adds as much again (measured: 0.7%); energies within 2%, gradients
    # (accumulated in fp32; measured 1%) within 3% in norm and pointing the same way.
    torch.testing.assert_close(energy_bf16, energy, rtol=2e-2, atol=0)
    assert float((grad_bf16 - grad).norm() / grad.norm()) < 0.03
    cosine = nn.functional.cosine_similarity(grad_bf16.flatten(1), grad.flatten(1))
    assert float(cosine.min()) > 0.999


def test_bf16_sgld_chains_on_the_mnist_network_end_at_the_same_energies():
    # 20 JEM-style SGLD steps from the same start with the same noise: the bf16 chains track the
    # full-precision ones; the final energies (evaluated in fp32) agree to 1e-3, i.e. within
    # 5% of their spread over chains (0.02), and the positions to 0.01 (the noise std per step).
    model, x0 = mnist_energy(), images(32)
    kwargs = dict(step_size=1.0, noise_std=0.01, n_steps=20, clamp=(-1.0, 1.0))
    full = Langevin(**kwargs).sample(model, x0, generator=torch.Generator().manual_seed(0))
    fast = Langevin(**kwargs, precision="bf16").sample(model, x0, generator=torch.Generator().manual_seed(0))
    assert float((fast - full).abs().max()) < 0.01
    torch.testing.assert_close(energy_and_grad(model, fast)[0], energy_and_grad(model, full)[0], atol=1e-3, rtol=0)


def gaussian_moments_check(sampler: Langevin, model: EnergyModel) -> None:
    """Chains recover N(mean, variance), and track the full-precision chains with the same noise.

    4000 chains, step 0.01, 1500 steps (7.5 relaxation times of the slow coordinate) from 0.
    Against the target: mean within 0.08 (3.5 standard errors), variance within 8% (statistical
    2.2% plus the step-size bias of at most 1%). Against full precision with the same noise:
    means within 0.01 and variances within 2%, far tighter than the statistical error.
    """
    x0 = torch.zeros(4000, 2)
    x = sampler.sample(model, x0, n_steps=1500, generator=torch.Generator().manual_seed(0))
    reference = Langevin(step_size=sampler.step_size).sample(model, x0, n_steps=1500,
                                                             generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.mean(0), MEAN, atol=0.08, rtol=0)
    torch.testing.assert_close(x.var(0), VARIANCE, rtol=0.08, atol=0)
    torch.testing.assert_close(x.mean(0), reference.mean(0), atol=0.01, rtol=0)
    torch.testing.assert_close(x.var(0), reference.var(0), rtol=0.02, atol=0)


def test_bf16_langevin_recovers_gaussian_moments():
    gaussian_moments_check(Langevin(step_size=0.01, precision="bf16"), LinearGaussian())


# --- the fastest CPU path: bf16 on a model in channels-last layout ----------------------------------


class ConvGaussian(EnergyModel):
    """Images ``(B, 2, 3, 3)`` whose pixels are independent N(MEAN[c], VARIANCE[c]) in channel c:
    E(x) = 0.5 ||conv1x1(x)||^2, a diagonal 1x1 convolution (so autocast runs it in bf16, on
    channels-last weights when the model is converted)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.diag(VARIANCE.rsqrt()).view(2, 2, 1, 1))
            self.conv.bias.copy_(-VARIANCE.rsqrt() * MEAN)

    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return 0.5 * self.conv(x).float().pow(2).flatten(1).sum(1)


def test_bf16_langevin_on_a_channels_last_model_recovers_gaussian_moments():
    # 2000 chains of 3x3 images, step 0.01, 1500 steps from 0; per channel, the 18000 pixels give
    # standard errors of 0.01 (mean) and 1.1% (variance): mean within 0.08, variance within 8% as in
    # gaussian_moments_check (statistics plus the step-size bias of at most 1%).
    model = ConvGaussian().to(memory_format=torch.channels_last)
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    x0 = torch.zeros(2000, 2, 3, 3).contiguous(memory_format=torch.channels_last)
    x = Langevin(step_size=0.01, precision="bf16").sample(model, x0, n_steps=1500,
                                                          generator=torch.Generator().manual_seed(0))
    per_channel = x.transpose(0, 1).reshape(2, -1)
    torch.testing.assert_close(per_channel.mean(1), MEAN, atol=0.08, rtol=0)
    torch.testing.assert_close(per_channel.var(1), VARIANCE, rtol=0.08, atol=0)


def test_bf16_sgld_on_the_channels_last_mnist_network_tracks_full_precision():
    # As test_bf16_sgld_chains_on_the_mnist_network_end_at_the_same_energies, with the network in
    # channels-last layout (the benchmark's fastest CPU path): the same tolerances hold.
    model, x0 = mnist_energy(), images(32)
    kwargs = dict(step_size=1.0, noise_std=0.01, n_steps=20, clamp=(-1.0, 1.0))
    full = Langevin(**kwargs).sample(model, x0, generator=torch.Generator().manual_seed(0))
    fast_model = mnist_energy().to(memory_format=torch.channels_last)
    fast = Langevin(**kwargs, precision="bf16").sample(fast_model, x0, generator=torch.Generator().manual_seed(0))
    assert float((fast - full).abs().max()) < 0.01
    torch.testing.assert_close(energy_and_grad(model, fast)[0], energy_and_grad(model, full)[0], atol=1e-3, rtol=0)


# --- torch.compile of the energy-gradient evaluation ------------------------------------------------


def test_compiled_gradient_recovers_gaussian_moments():
    gaussian_moments_check(Langevin(step_size=0.01, compile_gradient=True), LinearGaussian())


def test_compiled_gradient_matches_eager_on_the_mnist_network():
    # Same network, same start, same noise: the compiled energy-gradient evaluation may reorder
    # floating-point sums, so positions agree to 1e-4 and energies to 1e-4 after 5 SGLD steps.
    model, x0 = mnist_energy(), images(16)
    kwargs = dict(step_size=1.0, noise_std=0.01, n_steps=5, clamp=(-1.0, 1.0))
    eager = Langevin(**kwargs).sample(model, x0, generator=torch.Generator().manual_seed(0))
    compiled = Langevin(**kwargs, compile_gradient=True).sample(model, x0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=0)
    torch.testing.assert_close(energy_and_grad(model, compiled)[0], energy_and_grad(model, eager)[0],
                               atol=1e-4, rtol=0)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("make", [lambda **fast: MALA(step_size=0.05, **fast),
                                  lambda **fast: HMC(step_size=0.05, n_leapfrog=3, **fast)], ids=["mala", "hmc"])
def test_metropolis_samplers_compiled_gradient_matches_eager(make):
    # The compiled gradient may reorder floating-point sums (differences ~1e-7); over 4 steps of 64 chains no
    # accept/reject decision lies that close to its threshold, so the chains agree to 1e-5.
    model, x0 = LinearGaussian(), torch.zeros(64, 2)
    eager = make().sample(model, x0, n_steps=4, generator=torch.Generator().manual_seed(0))
    compiled = make(compile_gradient=True).sample(model, x0, n_steps=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)


# --- CUDA graphs (need a GPU; they cannot run on a CPU-only machine) ----------------------------------


@needs_cuda
def test_cuda_graph_replays_match_eager_and_follow_inputs_seeds_and_weights():
    device = torch.device("cuda")
    model, x0 = mnist_energy().to(device), images(16).to(device)
    kwargs = dict(step_size=1.0, noise_std=0.01, n_steps=5, clamp=(-1.0, 1.0))
    eager, graphed = Langevin(**kwargs), Langevin(**kwargs, cuda_graph=True)
    eager_generator, graphed_generator = torch.Generator(device), torch.Generator(device)  # reused: replays

    def both(x: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        return (eager.sample(model, x, generator=eager_generator.manual_seed(seed)),
                graphed.sample(model, x, generator=graphed_generator.manual_seed(seed)))

    for x, seed in [(x0, 0), (x0, 0), (x0.flip(0), 0), (x0, 1)]:  # capture, replay, new input, new seed
        expected, got = both(x, seed)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    with torch.no_grad():  # an in-place update (as an optimizer makes) is seen by the replay
        model.network[0].weight.mul_(2.0)
    expected, got = both(x0, 0)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    graphed.step_size = eager.step_size = 0.5  # a changed setting captures a new graph
    expected, got = both(x0, 0)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # the default generator: every replay draws fresh noise
    assert not torch.equal(graphed.sample(model, x0), graphed.sample(model, x0))


@needs_cuda
def test_cuda_graph_diagnostics_and_labels():
    device = torch.device("cuda")
    model, x0 = mnist_energy().to(device), images(8).to(device)
    y = torch.arange(8, device=device) % 10
    sampler = Langevin(step_size=1.0, noise_std=0.01, n_steps=3, cuda_graph=True, precision="bf16")
    generator = torch.Generator(device)
    x, diagnostics = sampler.sample(model, x0, y=y, generator=generator.manual_seed(0), return_diagnostics=True)
    assert x.shape == x0.shape and diagnostics["energy"].shape == (3,)
    again = sampler.sample(model, x0, y=y, generator=generator.manual_seed(0))
    torch.testing.assert_close(again, x, atol=1e-5, rtol=0)


@needs_cuda
@pytest.mark.parametrize("make", [
    lambda **fast: MALA(step_size=0.01, n_steps=4, **fast),
    lambda **fast: HMC(step_size=0.01, n_leapfrog=3, n_steps=2, **fast),
], ids=["mala", "hmc"])
def test_cuda_graph_on_metropolis_samplers_matches_eager(make):
    # The replay runs the eager kernels: positions agree to float32 rounding, acceptance rates too.
    device = torch.device("cuda")
    model, x0 = mnist_energy().to(device), images(16).to(device)
    eager, graphed = make(), make(cuda_graph=True)
    generator = torch.Generator(device)
    for seed in (0, 0, 1):  # capture, replay, new seed
        expected, expected_diagnostics = eager.sample(model, x0, generator=generator.manual_seed(seed),
                                                      return_diagnostics=True)
        got, diagnostics = graphed.sample(model, x0, generator=generator.manual_seed(seed), return_diagnostics=True)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(diagnostics["acceptance_rate"], expected_diagnostics["acceptance_rate"],
                                   atol=1e-4, rtol=0)
