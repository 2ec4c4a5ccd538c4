"""Bad inputs through the whole training path: each gets a clear error before any work is lost or half-written.

Every case here is a row of docs/bad_inputs.rst. The same checks one level down are tested where they live:
recipes (tests/test_recipes.py::test_bad_training_data_is_a_clear_error), models (tests/test_models.py),
buffers (tests/test_buffers.py::test_bad_inputs_are_clear_errors), samplers
(tests/contracts/test_samplers.py::test_bad_configuration_is_a_clear_error and
::test_model_with_wrong_energy_shape_is_a_clear_error), checkpoint files (tests/test_checkpoint.py) and the
MNIST folder (tests/test_mnist_example.py: missing, offline and truncated files).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ebmlib.buffers import ReplayBuffer, UniformInit
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


def make_ebm(model: EnergyModel) -> EBM:
    return EBM(model, Langevin(step_size=0.05, n_steps=2), ReplayBuffer(30, UniformInit((2,))),
               torch.optim.SGD(model.parameters(), lr=0.1))


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
    ],
)
def test_bad_settings_are_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


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
