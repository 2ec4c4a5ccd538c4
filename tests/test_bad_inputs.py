"""Bad inputs through the whole training path: each gets a clear error before any work is lost or half-written.

Every case here is a row of docs/bad_inputs.rst. The same checks one level down are tested where they live:
recipes (tests/test_recipes.py::test_bad_training_data_is_a_clear_error), models (tests/test_models.py),
buffers (tests/test_buffers.py::test_bad_inputs_are_clear_errors), samplers
(tests/contracts/test_samplers.py::test_bad_configuration_is_a_clear_error,
::test_every_numeric_argument_is_checked, ::test_check_finite_names_the_model_that_returned_nan and
::test_model_with_wrong_energy_shape_is_a_clear_error), initializers (tests/contracts/test_initializers.py),
checkpoint files (tests/test_checkpoint.py) and the MNIST folder (tests/test_mnist_example.py: missing, offline and
truncated files).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ebmlib.buffers import GaussianInit, ReplayBuffer, UniformInit
from ebmlib.checkpoint import CheckpointError, checkpoint_path, save_checkpoint
from ebmlib.models import MLP, ClassifierEnergy, EnergyModel
from ebmlib.recipes import EBM, JEM
from ebmlib.samplers import HMC, MALA, Langevin
from ebmlib.training import Trainer


def make_jem(hidden: int = 8, capacity: int = 30) -> JEM:
    torch.manual_seed(0)
    model = ClassifierEnergy(MLP(2, 3, hidden=hidden), n_classes=3)
    return JEM(model, Langevin(step_size=0.05, n_steps=2), ReplayBuffer(capacity, UniformInit((2,)), n_classes=3),
               torch.optim.Adam(model.parameters(), lr=1e-2))


class ScalarEnergy(EnergyModel):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def energy(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.scale * x.pow(2).sum()


class ColumnEnergy(ScalarEnergy):
    def energy(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.scale * x.pow(2).sum(1, keepdim=True)


class NaNEnergy(ScalarEnergy):
    def energy(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.scale * x.pow(2).sum(1) * float("nan")


def make_ebm(model: EnergyModel, check_finite: bool = False) -> EBM:
    return EBM(model, Langevin(step_size=0.05, n_steps=2, check_finite=check_finite),
               ReplayBuffer(30, UniformInit((2,))), torch.optim.SGD(model.parameters(), lr=0.1))


def labelled(x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, y)]


GOOD_X, GOOD_Y = torch.randn(8, 2), torch.arange(8) % 3
CASES = {
    "wrong data shape": (make_jem, labelled(torch.randn(8, 3), GOOD_Y), ValueError,
                         r"x must have shape \(B, 2\), got \(8, 3\)"),
    "wrong data dtype": (make_jem, labelled(GOOD_X.to(torch.int64), GOOD_Y), TypeError,
                         "x must be a floating-point tensor, got dtype torch.int64"),
    "NaN in data": (make_jem, labelled(GOOD_X.index_fill(0, torch.tensor([3]), float("nan")), GOOD_Y), ValueError,
                    "x contains NaN or Inf"),
    "Inf in data": (make_jem, labelled(GOOD_X.index_fill(0, torch.tensor([3]), float("inf")), GOOD_Y), ValueError,
                    "x contains NaN or Inf"),
    "labels out of range": (make_jem, labelled(GOOD_X, GOOD_Y + 1), ValueError,
                            r"y must lie in \[0, 2\], got values in \[1, 3\]"),
    "labels of the wrong dtype": (make_jem, labelled(GOOD_X, GOOD_Y.float()), TypeError,
                                  "y must have dtype torch.int64, got torch.float32"),
    "energy model returning (B, 1)": (lambda: make_ebm(ColumnEnergy()), [GOOD_X], ValueError,
                                      r"shape \(B,\) = \(8,\) .* got \(8, 1\) \(squeeze the last dimension\)"),
    "energy model returning a scalar": (lambda: make_ebm(ScalarEnergy()), [GOOD_X], ValueError,
                                        r"shape \(B,\) = \(8,\) .* got \(\)"),
    "energy model returning NaN (sampler with check_finite=True)": (
        lambda: make_ebm(NaNEnergy(), check_finite=True), [GOOD_X], FloatingPointError,
        r"Langevin\.sample: 8 of 8 chains hold NaN or Inf after 2 steps; the energy model NaNEnergy returned "
        "non-finite energies or gradients"),
    "buffer smaller than the batch": (lambda: make_jem(capacity=6), labelled(GOOD_X, GOOD_Y), ValueError,
                                      r"batch_size must lie in \[1, capacity=6\], got 8"),
    "empty dataset": (make_jem, DataLoader(TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)),
                                           batch_size=8), ValueError, "train_loader yielded no batches"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_training_input_is_a_clear_error_before_any_step_or_file(tmp_path, case):
    make, loader, error, message = CASES[case]
    recipe = make()
    before = {k: v.clone() for k, v in recipe.state_dict().items()}
    trainer = Trainer(recipe, device="cpu", progress=False, checkpoint_dir=tmp_path / "checkpoints")
    with pytest.raises(error, match=message):
        trainer.fit(loader, epochs=1)
    assert trainer.step == 0
    assert all(torch.equal(before[k], v) for k, v in recipe.state_dict().items())  # nothing changed
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())  # no file


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Langevin(step_size=0.0), "step_size must be positive, got 0.0"),
        (lambda: Langevin(step_size=-0.1), "step_size must be positive, got -0.1"),
        (lambda: Langevin(step_size=0.1, noise_std=-1.0), "noise_std must be non-negative, got -1.0"),
        (lambda: MALA(step_size=0.0), "step_size must be positive"),
        (lambda: HMC(step_size=-1.0), "step_size must be positive"),
        (lambda: ReplayBuffer(0, UniformInit((2,))), "capacity must be a positive number of chains, got 0"),
        (lambda: Langevin(step_size=float("inf")), "step_size must be a finite positive number, got inf"),
        (lambda: Langevin(step_size=float("nan")), "step_size must be a finite positive number, got nan"),
        (lambda: Langevin(step_size=0.1, noise_std=float("inf")), "noise_std must be a finite non-negative number"),
        (lambda: Langevin(step_size=0.1, grad_clip=float("inf")), "grad_clip must be a finite positive number"),
        (lambda: Langevin(step_size=0.1, clamp=(1.0, float("nan"))), r"clamp must be \(low, high\) with low < high"),
        (lambda: MALA(step_size=float("inf")), "step_size must be a finite positive number, got inf"),
        (lambda: HMC(step_size=0.1, n_leapfrog=0), "n_leapfrog must be a positive integer, got 0"),
        (lambda: Langevin(step_size=0.1).sample(nn.Identity(), torch.zeros(2, 2), n_steps=-1),
         "n_steps must be an integer >= 0, got -1"),
        (lambda: ReplayBuffer(8, UniformInit((2,)), reinit_prob=float("nan")), r"reinit_prob must lie in \[0, 1\]"),
        (lambda: UniformInit((2,), low=-float("inf")), "low must be a finite number, got -inf"),
        (lambda: GaussianInit((2,), mean=float("nan")), "mean must be a finite number, got nan"),
    ],
)
def test_bad_settings_are_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Langevin(step_size=0.1, n_steps=2.5), r"n_steps must be an integer >= 1, got 2\.5 \(float\)"),
        (lambda: Langevin(step_size=0.1, n_steps=True), r"n_steps must be an integer >= 1, got True \(bool\)"),
        (lambda: Langevin(step_size="0.1"), r"step_size must be a real number, got '0\.1' \(str\)"),
        (lambda: Langevin(step_size=0.1, clamp=1.0), r"clamp must be None or a pair of numbers \(low, high\)"),
        (lambda: HMC(step_size=0.1, n_leapfrog=2.5), r"n_leapfrog must be an integer >= 1, got 2\.5"),
        (lambda: MALA(step_size=0.1).sample(nn.Identity(), torch.zeros(2, 2), n_steps=2.5),
         r"n_steps must be an integer >= 0, got 2\.5 \(float\)"),
        (lambda: Langevin(step_size=0.1, check_finite="yes"), r"check_finite must be True or False, got 'yes'"),
        (lambda: ReplayBuffer(8.5, UniformInit((2,))), r"capacity must be an integer >= 1, got 8\.5 \(float\)"),
        (lambda: ReplayBuffer(8, UniformInit((2,)), n_classes=2.0), r"n_classes must be an integer >= 1, got 2\.0"),
        (lambda: ReplayBuffer(8, UniformInit((2,))).sample(2.0), r"batch_size must be an integer >= 0, got 2\.0"),
    ],
)
def test_settings_of_the_wrong_type_are_clear_errors(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_an_energy_model_returning_nan_is_named_by_the_finiteness_check():
    x0 = torch.zeros(4, 2)
    for sampler in (Langevin(step_size=0.1, n_steps=3, check_finite=True), MALA(step_size=0.1, check_finite=True)):
        with pytest.raises(FloatingPointError, match=rf"{type(sampler).__name__}\.sample: 4 of 4 chains hold NaN or "
                                                     r"Inf after \d+ steps; the energy model NaNEnergy"):
            sampler.sample(NaNEnergy(), x0, generator=torch.Generator().manual_seed(0))
    # off by default: the NaN samples come back without a word
    assert bool(Langevin(step_size=0.1, n_steps=3).sample(NaNEnergy(), x0).isnan().all())


def test_checkpoint_from_an_incompatible_model_is_refused_before_loading_anything(tmp_path):
    other = Trainer(make_jem(hidden=16), device="cpu", progress=False, checkpoint_dir=tmp_path)
    path = other.save()
    recipe = make_jem(hidden=8)
    before = {k: v.clone() for k, v in recipe.state_dict().items()}
    trainer = Trainer(recipe, device="cpu", progress=False)
    with pytest.raises(CheckpointError, match=rf"checkpoint file {path} does not fit this recipe: .*"
                                              r"model\.network\.0\.weight has shape \(16, 2\) there, \(8, 2\) here"):
        trainer.resume(path)
    assert all(torch.equal(before[k], v) for k, v in recipe.state_dict().items())  # not half-loaded
    assert trainer.step == 0


def test_checkpoint_with_missing_entries_names_them(tmp_path):
    state = Trainer(make_jem(), device="cpu", progress=False).state_dict()
    del state["recipe"]["buffer.samples"]
    path = save_checkpoint(checkpoint_path(tmp_path, 3), state)
    with pytest.raises(CheckpointError, match=rf"{path} does not fit this recipe: missing buffer\.samples"):
        Trainer(make_jem(), device="cpu", progress=False).resume(tmp_path)
