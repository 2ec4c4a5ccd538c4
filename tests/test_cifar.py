"""The CIFAR-10 path: loading tiny CIFAR-format batches written here (never the network), and the Wide ResNet."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.data import (
    CIFAR10_FILES,
    DATASET_NAMES,
    DATASETS,
    DatasetNotFoundError,
    class_names,
    default_root,
    download_cifar10,
    download_dataset,
    load_cifar10,
    load_dataset,
    raw_folder,
)
from ebmlib.models import ClassifierEnergy, Swish, WideResNet, check_energy
from ebmlib.recipes import JEM, jem_loss
from ebmlib.samplers import Langevin
from tests.cifar_files import expected_split, python2_pickle, write_cifar10


@pytest.fixture()
def offline(monkeypatch):
    """Make every CIFAR-10 download fail as it does offline; record the roots it was tried for."""
    attempts = []

    def fail(self):
        attempts.append(self.root)
        raise RuntimeError("Error downloading cifar-10-python.tar.gz: <urlopen error [Errno -2] Name or service not "
                           "known>")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", fail)
    return attempts


# ------------------------------------------------------------------------------------------------- data
def test_cifar10_is_a_dataset_name_beside_the_mnist_family():
    assert set(DATASET_NAMES) == {*DATASETS, "cifar10"} and "cifar10" not in DATASETS
    assert raw_folder("data", "cifar10").as_posix() == "data/cifar-10-batches-py"
    assert default_root("cifar10") == Path("data")
    assert class_names("cifar10") == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                      "ship", "truck"]
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar100'; expected one of \['cifar10', 'fashion"):
        load_dataset("cifar100", "data")


@pytest.mark.parametrize("train", [True, False])
def test_batches_load_in_order_as_float_images_in_minus_one_one(tmp_path, offline, train):
    root = write_cifar10(tmp_path)
    images, labels = load_dataset("cifar10", root, train=train)
    raw, raw_labels = expected_split(train)
    assert images.shape == ((30 if train else 8), 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and torch.equal(labels, raw_labels)
    torch.testing.assert_close(images, raw.float() / 255 * 2 - 1, rtol=0, atol=1e-6)
    assert images.min() == -1 and images.max() == 1
    # the planes are red, green, blue: the writer set green to 100 and blue to 200 everywhere
    for plane, value in ((1, 100), (2, 200)):
        assert torch.allclose(images[:, plane], torch.tensor(value / 255 * 2 - 1), rtol=0, atol=1e-6)
    assert offline == []  # files present: nothing fetched
    for a, b in zip(load_cifar10(root, train, download=False), (images, labels), strict=True):
        assert torch.equal(a, b)


def test_offline_without_files_the_message_names_the_folder_the_files_and_the_way_out(tmp_path, offline):
    empty = tmp_path / "empty"
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar10", empty, train=False)
    message = str(caught.value)
    assert offline == [str(empty)]  # one download tried, into the data root
    folder = empty / "cifar-10-batches-py"
    assert message.startswith(f"CIFAR10 files not found in {folder}")
    assert f"missing {', '.join(CIFAR10_FILES)}" in message
    assert "the download failed: RuntimeError: Error downloading cifar-10-python.tar.gz" in message
    assert "<dir>/cifar-10-batches-py/" in message and "--data-dir <dir>" in message
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(DatasetNotFoundError, match="the download failed"):
        download_dataset("cifar10", empty)


def test_without_download_nothing_is_fetched_and_one_missing_batch_is_named(tmp_path, offline):
    root = write_cifar10(tmp_path)
    (raw_folder(root, "cifar10") / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing data_batch_3, and downloading is off"):
        load_dataset("cifar10", root, train=False, download=False)
    assert offline == []
    write_cifar10(tmp_path)
    assert download_cifar10(root) == download_dataset("cifar10", root) == raw_folder(root, "cifar10")
    assert offline == []  # all six present: no download


class RunsCode:
    """Pickles as a call of ``print``: loading it with :func:`pickle.load` would run that call."""

    def __reduce__(self):
        return print, ("this batch ran code",)


@pytest.mark.parametrize("content, message", [
    (lambda path: path.read_bytes()[:500], "EOFError|UnpicklingError"),
    (lambda path: python2_pickle({"data": np.zeros((2, 768), np.uint8), "labels": [0, 0]}),
     r"data must be a uint8 array of shape \(N, 3072\), got a uint8 array of shape \(2, 768\)"),
    (lambda path: python2_pickle({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}),
     r"labels must lie in 0..9, got values in \[0, 10\]"),
    (lambda path: python2_pickle({"data": np.zeros((2, 3072), np.uint8)}), "KeyError: 'labels'"),
    (lambda path: pickle.dumps({b"data": RunsCode()}), "this file names builtins.print: refused"),
])
def test_a_damaged_or_foreign_batch_is_a_clear_error_and_never_runs_code(tmp_path, capsys, content, message):
    root = write_cifar10(tmp_path)
    path = raw_folder(root, "cifar10") / "data_batch_2"
    path.write_bytes(content(path))
    with pytest.raises(DatasetNotFoundError, match=f"could not read the CIFAR10 train files .*({message})"):
        load_dataset("cifar10", root, download=False)
    assert "ran code" not in capsys.readouterr().out
    assert load_dataset("cifar10", root, train=False, download=False)[0].shape == (8, 3, 32, 32)


# ------------------------------------------------------------------------------------------ Wide ResNet
def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_wrn_28_10_has_the_papers_36_5_million_parameters():
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        network = WideResNet(depth=28, width=10)
    # Zagoruyko & Komodakis (2016), table 1: WRN-28-10 has 36.5M parameters; ours has a bias in every
    # convolution instead of batch norm, 36,471,338. Tolerance 1%.
    assert n_parameters(network) == pytest.approx(36.5e6, rel=0.01)
    # the first convolution, two per block (4 blocks per stage), one skip per stage
    assert len([m for m in network.modules() if isinstance(m, nn.Conv2d)]) == 1 + 3 * 4 * 2 + 3
    assert network.head.in_features == 640


@pytest.mark.parametrize("channels, size", [(3, 32), (1, 28), (3, 8)])
def test_logits_and_energies_of_any_channels_and_size(channels, size):
    torch.manual_seed(0)
    model = ClassifierEnergy(WideResNet(depth=10, width=1, channels=channels, n_outputs=7), n_classes=7)
    x = torch.randn(3, channels, size, size)
    assert model.logits(x).shape == (3, 7)
    check_energy(model.energy(x), x, "WideResNet")  # the energy contract: one energy per sample, (B,)
    assert model(x).shape == model(x, torch.tensor([0, 3, 6])).shape == (3,)
    assert model.score(x).shape == x.shape


def test_no_batch_norm_by_default_so_each_energy_is_its_samples_own():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 32, 32)
    for norm, kind in ((None, None), ("group", nn.GroupNorm), ("batch", nn.BatchNorm2d)):
        network = WideResNet(depth=10, width=1, norm=norm).train()
        norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._NormBase | nn.GroupNorm)]
        assert {type(m) for m in norms} == (set() if kind is None else {kind})
        alone = torch.cat([network(x[i: i + 1]) for i in range(6)])
        # one sample's logits must not depend on the rest of its batch (float32 round-off: 1e-5)
        independent = torch.allclose(network(x), alone, atol=1e-5)
        assert independent == (norm != "batch"), norm  # batch statistics couple the samples


@pytest.mark.parametrize("activation", ["leaky_relu", "swish"])
def test_gradients_reach_every_parameter_and_the_input(activation):
    torch.manual_seed(0)
    network = WideResNet(depth=10, width=1, activation=activation)
    slopes = {m.negative_slope for m in network.modules() if isinstance(m, nn.LeakyReLU)}
    swishes = [m for m in network.modules() if isinstance(m, Swish)]
    # 2 activations per block (3 blocks) and the final one
    assert (slopes, len(swishes)) == (({0.2}, 0) if activation == "leaky_relu" else (set(), 7))  # JEM's slope 0.2
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    network(x).logsumexp(1).sum().backward()
    for name, parameter in network.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_channels_last_gives_the_same_logits():
    torch.manual_seed(0)
    network = WideResNet(depth=10, width=1, activation="swish")
    x = torch.randn(2, 3, 32, 32)
    expected = network(x)
    network.to(memory_format=torch.channels_last)
    torch.testing.assert_close(network(x.contiguous(memory_format=torch.channels_last)), expected,
                               rtol=1e-4, atol=1e-5)


def test_spectral_norm_gives_every_weight_a_unit_largest_singular_value():
    torch.manual_seed(0)
    network = WideResNet(depth=10, width=1, spectral_norm=True)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(50):
        network(x)  # each training-mode pass runs one power iteration per layer
    layers = [m for m in network.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    # the first convolution, 2 per block (one per stage), 2 skips (stage 1 keeps 16 channels), the head
    assert len(layers) == 10 and all(hasattr(m, "parametrizations") for m in layers)
    with torch.no_grad():
        sigma = torch.stack([torch.linalg.matrix_norm(m.weight.flatten(1), ord=2) for m in layers])
    # power iteration underestimates sigma(W), so W / estimate has norm >= 1; after 50 passes the worst layer was
    # at 1.00014 (seed 0) and 1.009 over seeds 0-4: tolerance 2%
    assert float(sigma.min()) > 0.999 and float(sigma.max()) < 1.02, sigma


@pytest.mark.parametrize("kwargs, error, message", [
    ({"depth": 27}, ValueError, r"depth must be 6n \+ 4 with n >= 1 \(10, 16, 22, 28, 34, ...\), got 27"),
    ({"depth": 4}, ValueError, "got 4"),
    ({"depth": 28.0}, TypeError, r"depth must be an integer 6n \+ 4 .* got 28.0 \(float\)"),
    ({"width": 0}, ValueError, "width must be a positive integer, got 0"),
    ({"channels": 2.5}, TypeError, "channels must be an integer"),
    ({"activation": "relu"}, ValueError, r"activation must be one of \('leaky_relu', 'swish'\), got 'relu'"),
    ({"norm": "layer"}, ValueError, r"norm must be one of \(None, 'group', 'batch'\), got 'layer'"),
    ({"negative_slope": 1.0}, ValueError, r"negative_slope must lie in \[0, 1\), got 1.0"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        WideResNet(**{"depth": 10, "width": 1, **kwargs})


def test_a_jem_step_on_cifar_shaped_data_trains_a_small_wide_resnet(tmp_path):
    images, labels = load_dataset("cifar10", write_cifar10(tmp_path), train=True, download=False)
    x, y = images[:8], labels[:8]
    torch.manual_seed(0)
    model = ClassifierEnergy(WideResNet(depth=10, width=1), n_classes=10).to(memory_format=torch.channels_last)
    buffer = ReplayBuffer(40, UniformInit((3, 32, 32)), reinit_prob=0.05, n_classes=10,
                          generator=torch.Generator().manual_seed(0))
    loss = jem_loss(p_x_given_y_weight=1.0, regularization_weight=0.1)
    recipe = JEM(model, Langevin(step_size=1.0, noise_std=0.01, n_steps=2, clamp=(-1.0, 1.0)), buffer,
                 torch.optim.Adam(model.parameters(), lr=1e-3), loss, input_noise_std=0.03,
                 unconditional_chains="mixture")
    before = [p.detach().clone() for p in model.parameters()]
    chains = buffer.samples.clone()
    metrics = recipe.training_step(x, y, generator=torch.Generator().manual_seed(1))
    assert all(torch.isfinite(value).all() for value in metrics.values()), metrics
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    moved = (buffer.samples != chains).flatten(1).any(1)
    assert 0 < int(moved.sum()) <= 16 and buffer.samples.abs().max() <= 1  # the chains it ran, kept in [-1, 1]
