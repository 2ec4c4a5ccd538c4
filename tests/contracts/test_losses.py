"""Contract suite: every loss reads typed inputs from an EnergyBatch and returns (scalar loss, detached metrics).

Every ``Loss`` exported by ``ebmlib.losses`` must have a factory in ``LOSSES`` (checked below), so a new
loss can't be left out of the suite.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

import ebmlib.losses
from ebmlib.losses import (
    Classification,
    ConditionalEnergies,
    ContrastiveDivergence,
    CrossEntropy,
    DenoisingScoreMatching,
    Energies,
    EnergyBatch,
    EnergyRegularization,
    EquilibriumMatching,
    FlowMatching,
    FlowVelocities,
    InterpolatedGradients,
    Loss,
    NoiseContrast,
    NoiseContrastiveEstimation,
    NoisyScores,
    SamplerEnergies,
    SamplerKL,
    SlicedScoreMatching,
    SlicedScores,
    WeightedSum,
)

LOSSES = {
    "cd": lambda: ContrastiveDivergence(),
    "cd_conditional": lambda: ContrastiveDivergence(conditional=True),
    "energy_l2": lambda: EnergyRegularization(),
    "energy_l2_conditional": lambda: EnergyRegularization(conditional=True),
    "cross_entropy": lambda: CrossEntropy(),
    "weighted_sum": lambda: WeightedSum(
        {"ce": (1.0, CrossEntropy()), "cd": (0.5, ContrastiveDivergence()), "l2": (0.1, EnergyRegularization())}
    ),
    "denoising_score_matching": lambda: DenoisingScoreMatching(),
    "sliced_score_matching": lambda: SlicedScoreMatching(),
    "noise_contrastive": lambda: NoiseContrastiveEstimation(log_normalizer=0.5),
    "sampler_kl": lambda: SamplerKL(),
    "improved_cd": lambda: WeightedSum({"cd": (1.0, ContrastiveDivergence()), "kl": (1.0, SamplerKL())}),
    "flow_matching": lambda: FlowMatching(),
    "energy_matching": lambda: WeightedSum({"flow": (1.0, FlowMatching()), "cd": (0.5, ContrastiveDivergence())}),
    "equilibrium_matching": lambda: EquilibriumMatching(gradient_multiplier=2.0, decay_start=0.5),
}


def test_every_exported_loss_is_in_the_suite():
    exported = {obj for name in ebmlib.losses.__all__ if inspect.isclass(obj := getattr(ebmlib.losses, name))
                and issubclass(obj, Loss) and not inspect.isabstract(obj)}
    assert exported == {type(make()) for make in LOSSES.values()}


@pytest.fixture(params=sorted(LOSSES))
def make_loss(request):
    return LOSSES[request.param]


def full_batch(dtype=torch.float32, b=6, m=4, k=3) -> EnergyBatch:
    g = torch.Generator().manual_seed(0)
    leaf = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(True)  # noqa: E731
    return EnergyBatch(
        Energies(positive=leaf(b), negative=leaf(m)),
        ConditionalEnergies(positive=leaf(b), negative=leaf(m)),
        Classification(logits=leaf(b, k), labels=torch.randint(k, (b,), generator=g)),
        NoisyScores(noise=leaf(b, 2), noise_std=leaf(b), score=leaf(b, 2)),
        SlicedScores(projection=leaf(b, 2), score=leaf(b, 2), projected_jacobian=leaf(b)),
        NoiseContrast(leaf(b), leaf(m), leaf(b), leaf(m)),
        SamplerEnergies(frozen_energy=leaf(m)),
        FlowVelocities(velocity=leaf(b, 2), target=leaf(b, 2)),
        InterpolatedGradients(data=leaf(b, 2), noise=leaf(b, 2),
                              interpolation=torch.rand(b, generator=g, dtype=dtype).requires_grad_(True),
                              gradient=leaf(b, 2)),
    )


def tensors(batch: EnergyBatch, kind: type) -> list[torch.Tensor]:
    value = batch[kind]
    return [getattr(value, f.name) for f in dataclasses.fields(value) if getattr(value, f.name).is_floating_point()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scalar_loss_detached_scalar_metrics(make_loss, dtype):
    loss, metrics = make_loss()(full_batch(dtype))
    assert isinstance(make_loss(), Loss)
    assert loss.shape == () and loss.dtype == dtype and loss.requires_grad
    assert metrics and all(v.shape == () and not v.requires_grad for v in metrics.values())


def test_needs_are_input_types():
    for make in LOSSES.values():
        needs = make().needs()
        assert needs and all(isinstance(kind, type) and dataclasses.is_dataclass(kind) for kind in needs)


def test_gradient_reaches_exactly_the_inputs_it_needs(make_loss):
    loss_fn = make_loss()
    batch = full_batch()
    loss_fn(batch)[0].backward()
    for kind in batch.kinds():
        for tensor in tensors(batch, kind):
            assert (tensor.grad is not None) == (kind in loss_fn.needs()), kind.__name__


def test_only_needed_inputs_suffice_and_a_missing_one_is_named(make_loss):
    loss_fn = make_loss()
    full = full_batch()
    needed = EnergyBatch(*(full[kind] for kind in loss_fn.needs()))
    torch.testing.assert_close(loss_fn(needed)[0], loss_fn(full)[0])
    missing = sorted(loss_fn.needs(), key=lambda kind: kind.__name__)[0]
    partial = EnergyBatch(*(full[kind] for kind in loss_fn.needs() if kind is not missing))
    with pytest.raises(ValueError, match=f"needs {missing.__name__}, which the recipe did not compute"):
        loss_fn(partial)


def test_state_dict_round_trip(make_loss):
    clone = make_loss()
    clone.load_state_dict(make_loss().state_dict())
    torch.testing.assert_close(clone(full_batch())[0], make_loss()(full_batch())[0])


def test_formulas_on_known_values():
    batch = EnergyBatch(Energies(positive=torch.tensor([1.0, 3.0]), negative=torch.tensor([-2.0])),
                        Classification(logits=torch.tensor([[0.0, 0.0], [10.0, -10.0]]), labels=torch.tensor([1, 0])))
    cd, cd_metrics = ContrastiveDivergence()(batch)
    assert float(cd) == pytest.approx(2.0 - (-2.0))
    assert float(cd_metrics["energy_gap"]) == pytest.approx(-4.0)
    assert float(EnergyRegularization()(batch)[0]) == pytest.approx((1 + 9) / 2 + 4)
    assert float(EnergyRegularization(positive_weight=10.0)(batch)[0]) == pytest.approx(10 * (1 + 9) / 2 + 4)
    assert float(EnergyRegularization(positive_weight=0.0)(batch)[0]) == pytest.approx(4.0)
    ce, ce_metrics = CrossEntropy()(batch)
    assert float(ce) == pytest.approx((torch.log(torch.tensor(2.0)).item() + 2.06e-9) / 2, rel=1e-5)
    assert float(ce_metrics["accuracy"]) == pytest.approx(0.5)  # argmax of a tie is class 0 != 1
    total, metrics = WeightedSum({"cd": (2.0, ContrastiveDivergence()), "l2": (0.5, EnergyRegularization())})(batch)
    assert float(total) == pytest.approx(2 * 4.0 + 0.5 * 9.0)
    assert set(metrics) >= {"loss/cd", "loss/l2", "cd/energy_gap", "l2/energy_l2"}


def test_conditional_terms_read_only_the_conditional_energies():
    batch = full_batch()
    cd = ContrastiveDivergence(conditional=True)(batch)[0]
    expected = batch[ConditionalEnergies].positive.mean() - batch[ConditionalEnergies].negative.mean()
    torch.testing.assert_close(cd, expected)
    assert ContrastiveDivergence(conditional=True).needs() == {ConditionalEnergies}


def test_weighted_sum_skips_zero_weights_and_rejects_bad_terms():
    loss = WeightedSum({"ce": (1.0, CrossEntropy()), "cd": (0.0, ContrastiveDivergence())})
    assert loss.needs() == {Classification}
    with pytest.raises(ValueError, match="non-negative"):
        WeightedSum({"cd": (-1.0, ContrastiveDivergence())})
    with pytest.raises(ValueError, match="positive weight"):
        WeightedSum({"cd": (0.0, ContrastiveDivergence())})
    with pytest.raises(TypeError, match="ebmlib Loss"):
        WeightedSum({"mse": (1.0, torch.nn.MSELoss())})


def test_energy_batch_refuses_duplicates_and_non_inputs():
    energies = Energies(positive=torch.zeros(2), negative=torch.zeros(2))
    with pytest.raises(ValueError, match="two inputs of type Energies"):
        EnergyBatch(energies, energies)
    with pytest.raises(TypeError, match="LossInput instances, got Tensor"):
        EnergyBatch(torch.zeros(2))
