"""Contract suite: every loss reads an EnergyBatch and returns (scalar loss, detached metrics)."""

from __future__ import annotations

import pytest
import torch

from ebmlib.losses import (
    ContrastiveDivergence,
    CrossEntropy,
    EnergyBatch,
    EnergyRegularization,
    Loss,
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
}


@pytest.fixture(params=sorted(LOSSES))
def make_loss(request):
    return LOSSES[request.param]


def full_batch(dtype=torch.float32, b=6, m=4, k=3) -> EnergyBatch:
    g = torch.Generator().manual_seed(0)
    leaf = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(True)  # noqa: E731
    return EnergyBatch(
        positive_energy=leaf(b), negative_energy=leaf(m), logits=leaf(b, k),
        labels=torch.randint(k, (b,), generator=g),
        conditional_positive_energy=leaf(b), conditional_negative_energy=leaf(m),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scalar_loss_detached_scalar_metrics(make_loss, dtype):
    loss, metrics = make_loss()(full_batch(dtype))
    assert isinstance(make_loss(), Loss)
    assert loss.shape == () and loss.dtype == dtype and loss.requires_grad
    assert metrics and all(v.shape == () and not v.requires_grad for v in metrics.values())


def test_gradient_reaches_exactly_the_fields_it_needs(make_loss):
    loss_fn = make_loss()
    batch = full_batch()
    loss_fn(batch)[0].backward()
    for name in ("positive_energy", "negative_energy", "logits",
                 "conditional_positive_energy", "conditional_negative_energy"):
        got_grad = getattr(batch, name).grad is not None
        assert got_grad == (name in loss_fn.needs()), name


def test_only_needed_fields_suffice_and_missing_ones_are_named(make_loss):
    loss_fn = make_loss()
    full = full_batch()
    needed = EnergyBatch(**{name: getattr(full, name) for name in loss_fn.needs()})
    torch.testing.assert_close(loss_fn(needed)[0], loss_fn(full)[0])
    missing = sorted(loss_fn.needs())[0]
    partial = EnergyBatch(**{n: getattr(full, n) for n in loss_fn.needs() if n != missing})
    with pytest.raises(ValueError, match=missing):
        loss_fn(partial)


def test_state_dict_round_trip(make_loss):
    clone = make_loss()
    clone.load_state_dict(make_loss().state_dict())
    torch.testing.assert_close(clone(full_batch())[0], make_loss()(full_batch())[0])


def test_formulas_on_known_values():
    batch = EnergyBatch(positive_energy=torch.tensor([1.0, 3.0]), negative_energy=torch.tensor([-2.0]),
                        logits=torch.tensor([[0.0, 0.0], [10.0, -10.0]]), labels=torch.tensor([1, 0]))
    cd, cd_metrics = ContrastiveDivergence()(batch)
    assert float(cd) == pytest.approx(2.0 - (-2.0))
    assert float(cd_metrics["energy_gap"]) == pytest.approx(-4.0)
    assert float(EnergyRegularization()(batch)[0]) == pytest.approx((1 + 9) / 2 + 4)
    ce, ce_metrics = CrossEntropy()(batch)
    assert float(ce) == pytest.approx((torch.log(torch.tensor(2.0)).item() + 2.06e-9) / 2, rel=1e-5)
    assert float(ce_metrics["accuracy"]) == pytest.approx(0.5)  # argmax of a tie is class 0 != 1
    total, metrics = WeightedSum({"cd": (2.0, ContrastiveDivergence()), "l2": (0.5, EnergyRegularization())})(batch)
    assert float(total) == pytest.approx(2 * 4.0 + 0.5 * 9.0)
    assert set(metrics) >= {"loss/cd", "loss/l2", "cd/energy_gap", "l2/energy_l2"}


def test_weighted_sum_skips_zero_weights_and_rejects_bad_terms():
    loss = WeightedSum({"ce": (1.0, CrossEntropy()), "cd": (0.0, ContrastiveDivergence())})
    assert loss.needs() == {"logits", "labels"}
    with pytest.raises(ValueError, match="non-negative"):
        WeightedSum({"cd": (-1.0, ContrastiveDivergence())})
    with pytest.raises(ValueError, match="positive weight"):
        WeightedSum({"cd": (0.0, ContrastiveDivergence())})
    with pytest.raises(TypeError, match="ebmlib Loss"):
        WeightedSum({"mse": (1.0, torch.nn.MSELoss())})
