"""Loss-term weights have one writer, the loss: schedules set a factor per term through ``set_weight_scale``."""

from __future__ import annotations

import pytest

from ebmlib.recipes import jem_loss
from ebmlib.training import TermWarmUp


def test_a_schedule_scales_the_full_weight_and_cannot_write_the_weights():
    loss = jem_loss(p_x_weight=2.0, regularization_weight=0.1)
    loss.set_weight_scale("p_x", 0.25)
    assert loss.weights["p_x"] == 0.5 and loss.full_weights["p_x"] == 2.0
    loss.set_weight_scale("p_x", 1.0)
    assert loss.weights["p_x"] == 2.0  # scaling again starts from the full weight, not from the last one
    with pytest.raises(TypeError):
        loss.weights["p_x"] = 3.0  # type: ignore[index]
    with pytest.raises(ValueError, match="name must be a term of the loss"):
        loss.set_weight_scale("p_z", 0.5)
    for factor in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite non-negative"):
            loss.set_weight_scale("p_x", factor)


def test_a_warm_up_made_while_another_holds_a_term_at_zero_still_ramps_to_the_full_weight():
    loss = jem_loss(p_x_weight=1.0, regularization_weight=0.2)
    first = TermWarmUp(loss, ["p_x", "energy_l2"], start=10, end=20)
    first.apply(step=0)
    assert (loss.weights["p_x"], loss.weights["energy_l2"]) == (0.0, 0.0)
    second = TermWarmUp(loss, ["energy_l2"], start=0, end=4)  # the loss, not the current weight, holds 0.2
    second.apply(step=2)
    assert loss.weights["energy_l2"] == pytest.approx(0.1)
    assert loss.weights["p_x"] == 0.0 and loss.weights["p_y_given_x"] == 1.0  # untouched by the second
