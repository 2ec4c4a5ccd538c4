"""Energy models: shapes, conditioning, scores and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ebmlib.models import MLP, ClassifierEnergy, NetworkEnergy, SwishCNN
from tests.energies import gaussian_2d


def test_score_is_minus_energy_gradient_and_leaves_parameters_alone():
    model = gaussian_2d()
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    expected = -(x - model.mean.detach()) / model.variance
    torch.testing.assert_close(model.score(x), expected)
    assert model.mean.grad is None


def test_classifier_energy_formulas():
    net = nn.Linear(2, 3)
    model = ClassifierEnergy(net, n_classes=3)
    x, y = torch.randn(5, 2), torch.tensor([0, 2, 1, 1, 0])
    logits = net(x)
    torch.testing.assert_close(model(x), -torch.logsumexp(logits, 1))
    torch.testing.assert_close(model(x, y), -logits[torch.arange(5), y])
    torch.testing.assert_close(model.class_probabilities(x), logits.softmax(1))
    # log p(y|x) = -E(x, y) + E(x)
    torch.testing.assert_close(model.class_probabilities(x)[torch.arange(5), y].log(), -model(x, y) + model(x))


def test_swish_cnn_gives_mnist_logits_and_energies():
    model = ClassifierEnergy(SwishCNN(width=8), n_classes=10)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3,)


@pytest.mark.parametrize(
    "network, message",
    [
        (nn.Linear(2, 4), r"shape \(B, n_classes\) = \(5, 3\), got \(5, 4\)"),
        (nn.Sequential(nn.Linear(2, 3), nn.Flatten(0)), r"got \(15,\)"),
    ],
)
def test_classifier_with_wrong_logits_shape(network, message):
    with pytest.raises(ValueError, match=message):
        ClassifierEnergy(network, n_classes=3)(torch.zeros(5, 2))


@pytest.mark.parametrize(
    "labels, error, message",
    [
        (torch.tensor([0, 1, 5]), ValueError, r"\[0, 2\]"),
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, "int64"),
        (torch.tensor([0, 1]), ValueError, r"shape \(3,\)"),
    ],
)
def test_bad_labels(labels, error, message):
    with pytest.raises(error, match=message):
        ClassifierEnergy(nn.Linear(2, 3), n_classes=3)(torch.zeros(3, 2), labels)


@pytest.mark.parametrize("out_features, squeeze", [(1, True), (2, False)])
def test_network_energy_shapes(out_features, squeeze):
    model = NetworkEnergy(MLP(2, out_features, hidden=8))
    if squeeze:
        assert model(torch.zeros(4, 2)).shape == (4,)
    else:
        with pytest.raises(ValueError, match=r"\(B,\) = \(4,\) .* got \(4, 2\)"):
            model(torch.zeros(4, 2))


def test_energy_model_returning_column_gets_a_hint():
    class Column(NetworkEnergy):
        def energy(self, x, y=None):
            return self.network(x)

    with pytest.raises(ValueError, match="squeeze the last dimension"):
        Column(nn.Linear(2, 1))(torch.zeros(3, 2))
