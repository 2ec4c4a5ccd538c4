"""Loading MNIST, Fashion-MNIST and KMNIST from tiny IDX files written here (never the network)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from ebmlib.data import (
    DATASETS,
    MNIST_FILES,
    SUBSETS,
    SUBSETS_ROOT,
    DatasetNotFoundError,
    MNISTNotFoundError,
    class_names,
    default_root,
    download_dataset,
    load_dataset,
    load_mnist,
    raw_folder,
)
from tests.idx_files import fake_digits, write_dataset

FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}


@pytest.fixture()
def offline(monkeypatch):
    """Make every download fail as it does offline (torchvision's MNIST.download is shared by the three
    datasets), and record the folders it was tried for."""
    attempts = []

    def fail(self):
        attempts.append(self.raw_folder)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: <urlopen error [Errno -2] Name or service "
                           "not known>")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fail)
    return attempts


def test_the_three_datasets_and_their_folders():
    assert DATASETS == FOLDERS
    for name, folder in FOLDERS.items():
        assert raw_folder("data", name).as_posix() == f"data/{folder}/raw"
        assert len(class_names(name)) == 10
    assert class_names("kmnist")[0] == "o" and class_names("mnist")[3] == "3 - three"
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar100'; expected one of \['cifar10', 'fashion-mnist'"):
        load_dataset("cifar100", "data")


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_each_dataset_loads_from_its_own_folder_scaled_to_minus_one_one(tmp_path, name):
    root = write_dataset(tmp_path, name, n_train=30, n_test=20)
    images, labels = load_dataset(name, root, train=True, download=False)
    raw, raw_labels = fake_digits(30)
    assert images.shape == (30, 1, 28, 28) and images.dtype == torch.float32
    torch.testing.assert_close(images[:, 0], raw.float() / 255 * 2 - 1)
    assert torch.equal(labels, raw_labels.long()) and labels.dtype == torch.int64
    test_images, _ = load_dataset(name, root, train=False, download=False)
    assert test_images.shape == (20, 1, 28, 28)
    others = [other for other in FOLDERS if other != name]
    for other in others:  # the files of one dataset are not another's
        with pytest.raises(DatasetNotFoundError, match=f"{FOLDERS[other]} files not found"):
            load_dataset(other, root, download=False)


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_offline_without_files_the_message_names_the_folder_the_files_and_the_way_out(tmp_path, offline, name):
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset(name, tmp_path / "empty", train=False)
    message = str(caught.value)
    raw = raw_folder(tmp_path / "empty", name)
    assert offline == [str(raw)]  # one download tried, into the dataset's own folder
    assert message.startswith(f"{FOLDERS[name]} files not found in {raw}")
    assert f"missing {', '.join(MNIST_FILES)}" in message
    assert "the download failed: RuntimeError: Error downloading" in message
    assert f"<dir>/{FOLDERS[name]}/raw/" in message and "--data-dir <dir>" in message
    assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, MNISTNotFoundError)


def test_without_download_nothing_is_fetched_and_a_single_missing_file_is_named(tmp_path, offline):
    root = write_dataset(tmp_path, "kmnist", n_train=20, n_test=20)
    (raw_folder(root, "kmnist") / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing t10k-labels-idx1-ubyte, and downloading is off"):
        load_dataset("kmnist", root, download=False)
    assert offline == []


def test_download_once_then_load_without_downloading(tmp_path, offline):
    # The multi-process pattern: process 0 calls download_dataset, the others wait, then all load with
    # download=False. With the files present, download_dataset fetches nothing.
    root = write_dataset(tmp_path, "fashion-mnist", n_train=20, n_test=10)
    assert download_dataset("fashion-mnist", root) == raw_folder(root, "fashion-mnist")
    assert offline == []
    assert load_dataset("fashion-mnist", root, train=False, download=False)[0].shape == (10, 1, 28, 28)
    with pytest.raises(DatasetNotFoundError, match="the download failed"):
        download_dataset("mnist", root)
    assert offline == [str(raw_folder(root, "mnist"))]


def test_a_truncated_file_is_a_clear_error(tmp_path):
    root = write_dataset(tmp_path, "fashion-mnist", n_train=20, n_test=20)
    path = raw_folder(root, "fashion-mnist") / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetNotFoundError, match="could not read the FashionMNIST train files"):
        load_dataset("fashion-mnist", root, download=False)


def test_load_mnist_is_load_dataset_of_mnist(tmp_path):
    root = write_dataset(tmp_path, "mnist", n_train=20, n_test=10)
    for train in (True, False):
        for a, b in zip(load_mnist(root, train, download=False), load_dataset("mnist", root, train, False),
                        strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_the_shipped_subsets_load_offline_balanced_and_scaled(offline, name):
    assert default_root(name) == SUBSETS_ROOT and name in SUBSETS
    train_x, train_y = load_dataset(name, SUBSETS_ROOT, train=True)
    test_x, test_y = load_dataset(name, SUBSETS_ROOT, train=False)
    assert offline == []  # read from the package, not downloaded
    assert train_x.shape == (8000, 1, 28, 28) and test_x.shape == (2000, 1, 28, 28)
    assert train_x.min() == -1 and train_x.max() == 1
    # every class, near 1/10 each (MNIST-10k's training classes: 690..902 images)
    assert train_y.bincount().min() >= 600 and test_y.bincount().min() >= 150
    assert (SUBSETS_ROOT / "README.md").read_text().count("MIT") >= 2  # sources and licences ship with the files


def test_gzipped_files_read_like_uncompressed_ones(tmp_path):
    import gzip
    root = write_dataset(tmp_path, "kmnist", n_train=20, n_test=10)
    expected = load_dataset("kmnist", root, train=True, download=False)
    for path in raw_folder(root, "kmnist").iterdir():
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    for a, b in zip(load_dataset("kmnist", root, train=True, download=False), expected, strict=True):
        assert torch.equal(a, b)
    assert default_root("kmnist").as_posix() == "data"  # no subset shipped: downloaded into ./data
