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
from ebmlib.losses import ContrastiveDivergence, NoiseContrastiveEstimation
from ebmlib.models import MLP, ClassifierEnergy, EnergyModel, NetworkEnergy, SwishCNN
from ebmlib.recipes import EBM, JEM, GaussianNoise, NoiseContrastiveEBM, ScoreMatchingEBM, ShortRunEBM, jem_loss
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
    "float64 data, float32 model": (make_jem, labelled(GOOD_X.double(), GOOD_Y), TypeError,
                                    r"x is float64 but the model's parameters are float32: convert the data with "
                                    r"x\.float\(\) or the model with model\.double\(\)"),
    "float32 data, float64 model": (lambda: make_jem().double(), labelled(GOOD_X, GOOD_Y), TypeError,
                                    r"x is float32 but the model's parameters are float64: convert the data with "
                                    r"x\.double\(\) or the model with model\.float\(\)"),
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


# ------------------------------------------------------------ parts that do not fit: refused when the recipe is built
def energy() -> NetworkEnergy:
    return NetworkEnergy(MLP(2, 1, hidden=8))  # 8 parameter tensors: network.0.weight, network.0.bias, ...


def adam(*modules: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for module in modules for p in module.parameters()], lr=1e-3)


def ebm_with(model: nn.Module, optimizer: object = None, loss=None, n_classes: int | None = None) -> EBM:
    return EBM(model, Langevin(step_size=0.05, n_steps=2), ReplayBuffer(30, UniformInit((2,)), n_classes=n_classes),
               adam(model) if optimizer is None else optimizer, loss)


def jem_with(model: nn.Module, loss=None, n_classes: int | None = 3) -> JEM:
    return JEM(model, Langevin(step_size=0.05, n_steps=2), ReplayBuffer(30, UniformInit((2,)), n_classes=n_classes),
               adam(model), loss)


def short_run_with(model: nn.Module, optimizer: object = None, loss=None, n_classes: int | None = None) -> ShortRunEBM:
    return ShortRunEBM(model, Langevin(step_size=0.05, n_steps=2), UniformInit((2,)),
                       adam(model) if optimizer is None else optimizer, loss, n_classes=n_classes)


def score_matching_with(model: nn.Module, optimizer: object = None) -> ScoreMatchingEBM:
    return ScoreMatchingEBM(model, adam(model) if optimizer is None else optimizer, (2,))


def nce_with(model: nn.Module, optimizer: object = None) -> NoiseContrastiveEBM:
    loss = NoiseContrastiveEstimation()
    return NoiseContrastiveEBM(model, GaussianNoise(torch.zeros(2), torch.ones(2)),
                               adam(model, loss) if optimizer is None else optimizer, loss)


def classifier() -> ClassifierEnergy:
    return ClassifierEnergy(MLP(2, 3, hidden=8), n_classes=3)


PLAIN = r"model must be an ebmlib\.models\.EnergyModel .*, got {}: wrap the network in NetworkEnergy\(network\)"
OTHER = r"optimizer must hold every trainable parameter of model, but {} of its 8 are not in it"
CONDITIONAL = (r"loss {} has a class-conditional term \(it needs ConditionalEnergies.*\), whose negatives are chains "
               r"of each class, but {} keeps no class-conditional chains: {}")
WRONG_PARTS = {
    "JEM with an energy model that is not a classifier": (
        lambda: jem_with(NetworkEnergy(SwishCNN(n_outputs=1))), TypeError,
        r"model must be a ClassifierEnergy .*, got NetworkEnergy: wrap the classifier network, which returns "
        r"\(B, n_classes\) logits, in ClassifierEnergy\(network, n_classes=K\)"),
    "EBM with a plain network": (lambda: ebm_with(MLP(2, 1, hidden=8)), TypeError, PLAIN.format("MLP")),
    "ShortRunEBM with a plain network": (lambda: short_run_with(nn.Linear(2, 1)), TypeError, PLAIN.format("Linear")),
    "ScoreMatchingEBM with a plain network": (lambda: score_matching_with(nn.Linear(2, 1)), TypeError,
                                              PLAIN.format("Linear")),
    "NoiseContrastiveEBM with a plain network": (lambda: nce_with(nn.Linear(2, 1)), TypeError, PLAIN.format("Linear")),
    "optimizer over another module": (
        lambda: ebm_with(energy(), adam(energy())), ValueError,
        OTHER.format(8) + r" \(network\.0\.weight, network\.0\.bias, network\.2\.weight, \.\.\.\), so training would "
        r"not change them: build the optimizer over model\.parameters\(\)"),
    "optimizer over part of the model": (lambda: ebm_with(model := energy(), adam(model.network[-1])), ValueError,
                                         OTHER.format(6)),
    "optimizer over another module (ShortRunEBM)": (lambda: short_run_with(energy(), adam(energy())), ValueError,
                                                    OTHER.format(8)),
    "optimizer over another module (ScoreMatchingEBM)": (lambda: score_matching_with(energy(), adam(energy())),
                                                         ValueError, OTHER.format(8)),
    "optimizer over another module (NoiseContrastiveEBM)": (
        lambda: nce_with(energy(), adam(energy(), NoiseContrastiveEstimation())), ValueError, OTHER.format(8)),
    "parameters instead of an optimizer": (
        lambda: ebm_with(model := energy(), model.parameters()), TypeError,
        r"optimizer must be a torch\.optim\.Optimizer over model's parameters .*, got generator"),
    "class-conditional term, JEM buffer without n_classes": (
        lambda: jem_with(classifier(), jem_loss(p_x_given_y_weight=1), n_classes=None), ValueError,
        CONDITIONAL.format("WeightedSum", "JEM", r"give the buffer n_classes \(ReplayBuffer\(capacity, initializer, "
                                                 r"n_classes=K\), a block of chains per class\), or give that term "
                                                 "weight 0")),
    "class-conditional term, EBM buffer without n_classes": (
        lambda: ebm_with(energy(), loss=ContrastiveDivergence(conditional=True)), ValueError,
        CONDITIONAL.format("ContrastiveDivergence", "EBM", "give the buffer n_classes")),
    "class-conditional term, ShortRunEBM without n_classes": (
        lambda: short_run_with(energy(), loss=ContrastiveDivergence(conditional=True)), ValueError,
        CONDITIONAL.format("ContrastiveDivergence", "ShortRunEBM", "give ShortRunEBM n_classes=K")),
}


@pytest.mark.parametrize("case", sorted(WRONG_PARTS))
def test_parts_that_do_not_fit_are_refused_when_the_recipe_is_built(case):
    make, error, message = WRONG_PARTS[case]
    with pytest.raises(error, match=message):
        make()


def test_parts_that_fit_are_accepted():
    frozen = energy()
    frozen.network[0].requires_grad_(False)  # frozen parameters need not be in the optimizer
    ebm_with(frozen, torch.optim.SGD([p for p in frozen.parameters() if p.requires_grad], lr=0.1))
    whole = energy()
    parameters = list(whole.parameters())
    ebm_with(whole, torch.optim.SGD([{"params": parameters[:2]}, {"params": parameters[2:], "lr": 0.01}], lr=0.1))
    jem_with(classifier(), jem_loss(p_x_given_y_weight=0.0), n_classes=None)  # no class-conditional term: one pool
    jem_with(classifier(), jem_loss(p_x_given_y_weight=1.0), n_classes=3)
    short_run_with(energy(), loss=ContrastiveDivergence(conditional=True), n_classes=3)


def test_a_generator_of_another_type_is_named_before_any_draw():
    message = r"generator must be a torch\.Generator, got int \(0\); for a seed, pass torch\.Generator\(device\)"
    recipes = {"EBM": ebm_with(energy()), "JEM": make_jem(), "ShortRunEBM": short_run_with(energy()),
               "ScoreMatchingEBM": score_matching_with(energy()), "NoiseContrastiveEBM": nce_with(energy())}
    for name, recipe in recipes.items():
        before = {k: v.clone() for k, v in recipe.state_dict().items()}
        with pytest.raises(TypeError, match=message):
            recipe.training_step(GOOD_X, GOOD_Y if name == "JEM" else None, generator=0)
        assert all(torch.equal(before[k], v) for k, v in recipe.state_dict().items()), name  # nothing changed
    for name in ("EBM", "ShortRunEBM"):
        with pytest.raises(TypeError, match=message):
            recipes[name].generate(3, generator=0)
    with pytest.raises(TypeError, match=message):
        recipes["JEM"].generate(3, y=torch.tensor([0, 1, 2]), generator=0)
    for sampler in (Langevin(step_size=0.05), MALA(step_size=0.05), HMC(step_size=0.05)):
        with pytest.raises(TypeError, match=message):
            sampler.sample(energy(), torch.zeros(4, 2), generator=0)


@pytest.mark.parametrize("make", [score_matching_with, nce_with, short_run_with])
def test_data_of_another_dtype_than_the_model_is_named_by_every_recipe(make):
    recipe = make(energy())
    with pytest.raises(TypeError, match=r"x is float64 but the model's parameters are float32: convert the data "
                                        r"with x\.float\(\) or the model with model\.double\(\)"):
        recipe.training_step(GOOD_X.double(), generator=torch.Generator().manual_seed(0))
