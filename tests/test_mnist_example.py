"""examples/mnist_jem.py end to end on tiny IDX files written here, and MNIST loading (never the network)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from ebmlib.checkpoint import list_checkpoints
from ebmlib.data import MNISTNotFoundError, default_root, load_mnist, load_splits, mnist_raw_folder
from ebmlib.models import WideResNet
from ebmlib.recipes import JEM
from ebmlib.training import resolve_precision
from tests.cifar_files import write_cifar10
from tests.idx_files import fake_digits, write_mnist

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_jem.py"
OUTPUTS = ("metrics.json", "samples_conditional.png", "samples_unconditional.png", "chain_evolution.png",
           "energy_histogram.png", "ood_hardest_cases.png", "training_curves.png", "history.csv")


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("mnist_jem_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture()
def no_network(monkeypatch):
    """Make every MNIST download fail as it does offline, and record the attempts."""
    attempts = []

    def offline(self):
        attempts.append(self.root)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: <urlopen error [Errno -2] Name or service "
                           "not known>")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    return attempts


def numbers(value):
    """Every number in a JSON value, recursively."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_quick_run_writes_every_output_with_finite_metrics(example, tmp_path, no_network):
    data = write_mnist(tmp_path / "data", n_train=120, n_test=60)
    out = tmp_path / "run"
    assert example.main(["--quick", "--data-dir", str(data), "--out", str(out), "--no-progress"]) == 0
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert list_checkpoints(out / "checkpoints")
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "test_expected_calibration_error", "wall_seconds", "settings", "steps", "epochs",
                "calibrated/test_expected_calibration_error", "calibrated/temperature",
                # issue 10: the measures from uniform noise, beside informative starts and the buffer
                "from_noise/conditional_recognition", "from_noise/frechet_distance_ratio",
                "from_noise/class_share_min", "from_class_gaussians/conditional_recognition",
                "from_class_gaussians/frechet_distance_ratio", "buffer/frechet_distance_ratio",
                "ood_auroc/uniform_noise/energy", "ood_auroc/inverted/energy", "ood_auroc/flipped/energy",
                "ood_auroc/inverted/grad_norm"):
        assert key in metrics, key
    assert all(f"from_noise/class_share/{k}" in metrics for k in range(10))
    assert "targets" not in metrics  # the targets live in the docs (docs/scripts/rst_tables.py) and the tests
    assert metrics["steps"] == example.QUICK["steps"] and metrics["settings"]["quick"] is True
    assert metrics["data"] == {"dataset": "mnist", "train_images": 100, "test_images": 60, "calibration_images": 20,
                               "data_dir": str(data)}  # the last 20 training images only fit the temperature
    values = numbers({k: v for k, v in metrics.items() if k != "settings"})
    assert len(values) > 20 and all(math.isfinite(v) for v in values)
    rows = (out / "history.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) > 1
    assert no_network == []  # the files were there: nothing was downloaded


def test_loss_weights_follow_the_command_line(example):
    images, labels = torch.zeros(20, 1, 28, 28), torch.arange(20) % 10
    args = example.parse_args(["--classification-weight", "3", "--regularization", "0.02", "--p-x-weight", "0.5",
                               "--positive-regularization", "0.1"])
    loss = example.build_recipe(args, images, labels).loss
    weights = loss.weights
    assert (weights["p_y_given_x"], weights["p_x"], weights["energy_l2"]) == (3.0, 0.5, 0.02)
    assert loss.terms["energy_l2"].positive_weight == pytest.approx(0.1 / 0.02)  # the data side: 0.1
    defaults = example.parse_args([])
    default_loss = example.build_recipe(defaults, images, labels).loss
    assert default_loss.weights["p_y_given_x"] == defaults.classification_weight > 1  # the classifier outweighs CD
    # the data's energies are held nearer 0 than the samples' (class offsets, see EnergyRegularization)
    ratio = defaults.positive_regularization / defaults.regularization
    assert default_loss.terms["energy_l2"].positive_weight == pytest.approx(ratio) and ratio > 1


def test_the_network_is_laid_out_for_the_fast_sampling_path(example):
    recipe = example.build_recipe(example.parse_args([]), torch.zeros(20, 1, 28, 28), torch.arange(20) % 10)
    convolutions = [m.weight for m in recipe.model.modules() if isinstance(m, torch.nn.Conv2d)]
    # bf16 where this machine computes it natively (AVX512-BF16, AMX or CUDA), else fp32 (emulated bf16 is slower)
    assert len(convolutions) == 4 and recipe.sampler.precision == resolve_precision("auto", "cpu")
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)
    assert not any(w.is_contiguous() for w in convolutions[1:])  # the first has one input channel: both layouts


def test_interrupted_run_resumes_from_its_checkpoint(example, tmp_path, monkeypatch, capsys):
    data = write_mnist(tmp_path / "data", n_train=120, n_test=60)
    out = tmp_path / "run"
    argv = ["--quick", "--data-dir", str(data), "--out", str(out), "--no-progress", "--steps", "6",
            "--eval-steps", "4", "--calibration-size", "0"]  # all 120 images train: 3 batches per epoch
    calls, step = [], JEM.training_step

    def ctrl_c_in_step_5(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(JEM, "training_step", ctrl_c_in_step_5)
    assert example.main(argv) == 130
    assert "interrupted at step 4" in capsys.readouterr().err
    saved = [p.name for p in list_checkpoints(out / "checkpoints")]
    assert saved == ["checkpoint-00000003.pt", "checkpoint-00000004.pt"]  # end of epoch 1 (3 batches), Ctrl-C
    assert not (out / "metrics.json").exists()
    assert example.main(argv) == 2  # a new run would overwrite the checkpoints: refused
    assert "add --resume to continue that run" in capsys.readouterr().err

    monkeypatch.setattr(JEM, "training_step", step)
    assert example.main(argv + ["--resume"]) == 0
    assert "at step 4" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6
    assert [p.name for p in list_checkpoints(out / "checkpoints")][-1] == "checkpoint-00000006.pt"


def test_holding_out_every_training_image_is_a_clear_error(example, tmp_path, capsys):
    data = write_mnist(tmp_path / "data", n_train=40, n_test=20)
    argv = ["--quick", "--data-dir", str(data), "--out", str(tmp_path / "run"), "--calibration-size", "40"]
    assert example.main(argv) == 2
    message = capsys.readouterr().err
    assert "a hold-out of 40 images leaves none of the 40 training images to train on" in message
    assert "--calibration-size sets the hold-out" in message
    assert not (tmp_path / "run").exists()


def test_resume_without_a_checkpoint_is_a_clear_error(example, tmp_path, capsys):
    data = write_mnist(tmp_path / "data", n_train=40, n_test=20)
    assert example.main(["--quick", "--data-dir", str(data), "--out", str(tmp_path / "run"), "--resume"]) == 2
    assert "no checkpoint-<step>.pt files in" in capsys.readouterr().err


def test_offline_without_files_stops_before_training_and_says_how_to_provide_them(example, tmp_path, no_network,
                                                                                  capsys):
    out = tmp_path / "run"
    assert example.main(["--quick", "--data-dir", str(tmp_path / "empty"), "--out", str(out)]) == 2
    message = capsys.readouterr().err
    assert no_network  # a download was tried
    assert f"MNIST files not found in {mnist_raw_folder(tmp_path / 'empty')}" in message
    assert "the download failed" in message and "--data-dir <dir>" in message
    assert "without --data-dir, mnist and fashion-mnist read the subsets shipped with ebmlib" in message
    assert "shared" not in message  # no path of the machines that made ebmlib
    assert not out.exists()  # nothing trained, nothing written


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_without_a_data_flag_the_shipped_subset_is_read_with_no_network(example, no_network, dataset, monkeypatch):
    args = example.parse_args(["--quick", "--dataset", dataset])
    assert args.data_dir is None
    train_x, train_y, test_x, test_y, calibration_x, _ = load_splits(
        args.dataset, default_root(args.dataset), train_size=args.train_size, test_size=args.test_size,
        holdout=args.calibration_size)
    assert no_network == []  # nothing was downloaded
    assert len(train_x) + len(calibration_x) == 500 and len(test_x) == 200  # --quick's sizes of 8,000 / 2,000
    assert train_x.min() >= -1 and train_x.max() <= 1 and set(train_y.tolist()) == set(range(10))


@pytest.mark.parametrize("flag, value", [("--steps", "-3"), ("--steps", "2.5"), ("--batch-size", "0"),
                                         ("--lr", "-1e-3"), ("--reinit-prob", "1.5"), ("--regularization", "0")])
def test_bad_numbers_on_the_command_line_stop_before_any_work(example, tmp_path, flag, value, capsys):
    with pytest.raises(SystemExit) as stopped:
        example.main(["--quick", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "run"), flag, value])
    assert stopped.value.code == 2 and flag in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_energy_penalty_switches_off_with_both_of_its_flags(example):
    args = example.parse_args(["--regularization", "0", "--positive-regularization", "0"])
    loss = example.build_recipe(args, torch.zeros(20, 1, 28, 28), torch.arange(20) % 10).loss
    assert loss.weights["energy_l2"] == 0.0


def test_load_mnist_scales_to_minus_one_one_and_reads_both_splits(tmp_path):
    root = write_mnist(tmp_path, n_train=30, n_test=20)
    images, labels = load_mnist(root, train=True, download=False)
    raw, raw_labels = fake_digits(30)
    assert images.shape == (30, 1, 28, 28) and images.dtype == torch.float32
    torch.testing.assert_close(images[:, 0], raw.float() / 255 * 2 - 1)
    assert torch.equal(labels, raw_labels.long())
    assert load_mnist(root, train=False, download=False)[0].shape == (20, 1, 28, 28)


def test_load_mnist_without_download_names_the_folder_and_the_missing_files(tmp_path):
    root = write_mnist(tmp_path, n_train=20, n_test=20)
    (mnist_raw_folder(root) / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(MNISTNotFoundError, match="missing t10k-labels-idx1-ubyte, and downloading is off"):
        load_mnist(root, download=False)


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    root = write_mnist(tmp_path, n_train=20, n_test=20)
    path = mnist_raw_folder(root) / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(MNISTNotFoundError, match="could not read the MNIST train files"):
        load_mnist(root, download=False)


def test_quick_run_on_cifar10_files_writes_every_output(example, tmp_path, no_network):
    # torchvision's CIFAR-10 layout (cifar-10-batches-py), written here: 3 x 32 x 32 colour images in 10 classes
    data = write_cifar10(tmp_path / "data", n_per_train_batch=24, n_test=60)
    out = tmp_path / "run"
    assert example.main(["--quick", "--dataset", "cifar10", "--data-dir", str(data), "--out", str(out),
                         "--no-progress"]) == 0
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == {"dataset": "cifar10", "train_images": 100, "test_images": 60, "calibration_images": 20,
                               "data_dir": str(data)}
    assert math.isfinite(metrics["test_accuracy"]) and math.isfinite(metrics["from_noise/frechet_distance_ratio"])
    assert no_network == []


@pytest.mark.parametrize("model, depth", [("wrn-16-2", 16), ("wrn-28-10", 28)])
def test_the_model_flag_builds_a_wide_resnet_for_colour_images(example, model, depth):
    args = example.parse_args(["--dataset", "cifar10", "--model", model])
    network = example.build_recipe(args, torch.zeros(20, 3, 32, 32), torch.arange(20) % 10).model.network
    assert isinstance(network, WideResNet) and network.depth == depth
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in network.modules())
