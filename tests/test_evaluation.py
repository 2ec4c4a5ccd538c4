"""Evaluation metrics on cases with known answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ebmlib.evaluation import (
    OOD_TRANSFORMS,
    FeatureClassifier,
    accuracy,
    auroc,
    expected_calibration_error,
    feature_frechet_distance,
    frechet_distance,
    mmd,
    ood_auroc,
    ood_scores,
    recognition_rate,
    train_feature_classifier,
)
from ebmlib.models import ClassifierEnergy
from tests.idx_files import fake_digits


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_accuracy_counts_argmax_hits():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 5.0], [1.0, 2.0, 0.0], [0.0, 1.0, 0.0]])
    assert float(accuracy(logits, torch.tensor([0, 2, 1, 0]))) == 0.75
    with pytest.raises(ValueError, match="labels shape"):
        accuracy(logits, torch.tensor([0, 1]))


def test_ece_of_a_perfectly_calibrated_toy_is_near_zero():
    # Confidence c ~ U(0.5, 1) and the prediction right with probability exactly c.
    n = 200_000
    confidence = 0.5 + 0.5 * torch.rand(n, generator=g(0))
    right = torch.rand(n, generator=g(1)) < confidence
    probabilities = torch.stack([confidence, 1 - confidence], dim=1)
    labels = torch.where(right, 0, 1)
    # Per-bin accuracy has std <= sqrt(0.25 / (n / 8)) = 0.0032; 0.01 is > 3 sigma.
    assert float(expected_calibration_error(probabilities, labels)) < 0.01


def test_ece_of_overconfident_and_exact_cases():
    certain = torch.tensor([[1.0, 0.0]] * 4)
    assert float(expected_calibration_error(certain, torch.tensor([0, 1, 0, 1]))) == pytest.approx(0.5)
    assert float(expected_calibration_error(certain, torch.tensor([0, 0, 0, 0]))) == pytest.approx(0.0)
    # two bins: {0.9, 0.9} all right (gap 0.1), {0.6, 0.6} half right (gap 0.1) -> 0.1
    p = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    assert float(expected_calibration_error(p, torch.tensor([0, 1, 0, 0]))) == pytest.approx(0.1)


def test_auroc_known_values():
    assert float(auroc(torch.tensor([5.0, 6.0, 7.0]), torch.tensor([1.0, 2.0]))) == 1.0
    assert float(auroc(torch.tensor([1.0, 2.0]), torch.tensor([5.0, 6.0, 7.0]))) == 0.0
    assert float(auroc(torch.ones(4), torch.ones(3))) == 0.5
    with pytest.raises(ValueError, match="non-empty 1-D"):
        auroc(torch.ones(0), torch.ones(3))


def test_auroc_equals_the_pairwise_definition_with_ties():
    positive = torch.randint(0, 6, (40,), generator=g(2)).float()
    negative = torch.randint(0, 4, (30,), generator=g(3)).float()
    diff = positive[:, None] - negative[None, :]
    expected = ((diff > 0).double() + 0.5 * (diff == 0).double()).mean()
    torch.testing.assert_close(auroc(positive, negative), expected)


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    # N(0, I) vs N(mu, 4 I) in D = 4: d^2 = |mu|^2 + D (1 + 4 - 2 * 2) = 4 + 4 = 8.
    a = torch.randn(100_000, 4, generator=g(0))
    b = torch.tensor([1.0, 1.0, 1.0, 1.0]) + 2 * torch.randn(100_000, 4, generator=g(1))
    # Sampling error of means and covariances at n = 1e5 is ~0.02 per entry; 0.15 leaves > 3 sigma.
    assert float(frechet_distance(a, b)) == pytest.approx(8.0, abs=0.15)
    assert float(frechet_distance(a, a)) == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(frechet_distance(a[:500], b[:500]), frechet_distance(b[:500], a[:500]))


def test_feature_classifier_learns_and_is_cached(tmp_path, monkeypatch):
    images, labels = fake_digits(200)
    x = images.float().div(255).mul(2).sub(1).unsqueeze(1)
    y = labels.long()
    cache = tmp_path / "judge.pt"
    torch.manual_seed(0)
    judge = train_feature_classifier(x, y, epochs=3, batch_size=20, generator=g(), cache_path=cache)
    assert float(recognition_rate(judge, x, y)) > 0.9  # the classes are trivially separable bars
    assert cache.is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been loaded")

    monkeypatch.setattr(torch.optim, "Adam", no_training)
    cached = train_feature_classifier(x, y, cache_path=cache)
    torch.testing.assert_close(cached(x), judge(x))
    with pytest.raises(AssertionError, match="cached classifier"):  # other data: the cache does not apply
        train_feature_classifier(x[:100], y[:100], cache_path=cache)


def test_feature_frechet_distance_is_zero_for_the_same_images_and_larger_for_noise():
    torch.manual_seed(0)
    judge = FeatureClassifier().eval()
    images = fake_digits(100)[0].float().div(255).mul(2).sub(1).unsqueeze(1)
    noise = torch.rand(100, 1, 28, 28, generator=g()) * 2 - 1
    assert float(feature_frechet_distance(judge, images, images)) == pytest.approx(0.0, abs=1e-6)
    assert float(feature_frechet_distance(judge, images, noise)) > 0.0


def test_recognition_rate():
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert float(recognition_rate(nn.Identity(), logits, torch.tensor([1, 0, 0]))) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="intended must have shape"):
        recognition_rate(nn.Identity(), logits, torch.tensor([1]))


class Quadratic(nn.Module):
    """Logits ``[-|x|^2, -|x|^2 + 1]``: logsumexp = -|x|^2 + log(1 + e), gradient -2x."""

    def forward(self, x):
        s = -x.flatten(1).pow(2).sum(1, keepdim=True)
        return torch.cat([s, s + 1.0], dim=1)


def test_ood_scores_match_their_formulas():
    model = ClassifierEnergy(Quadratic(), n_classes=2)
    x = torch.randn(6, 3, generator=g())
    scores = ood_scores(model, x, batch_size=4)
    squared = x.pow(2).sum(1)
    torch.testing.assert_close(scores["energy"], -squared + torch.log1p(torch.tensor(1.0).exp()))
    torch.testing.assert_close(scores["max_softmax"], torch.full((6,), torch.tensor(1.0).exp() / (1 + torch.e)))
    torch.testing.assert_close(scores["grad_norm"], -2 * x.norm(dim=1))
    assert all(p.grad is None for p in model.parameters())


def test_ood_auroc_separates_noise_from_data_that_the_model_prefers():
    model = ClassifierEnergy(Quadratic(), n_classes=2)
    data = 0.05 * torch.randn(50, 1, 4, 4, generator=g())  # near 0, where the density peaks
    results = ood_auroc(model, data, generator=g(1))
    assert set(results) == {f"{t}/{s}" for t in OOD_TRANSFORMS for s in ("energy", "max_softmax", "grad_norm")}
    assert float(results["uniform_noise/energy"]) == 1.0
    assert float(results["uniform_noise/grad_norm"]) == 1.0
    assert float(results["uniform_noise/max_softmax"]) == 0.5  # constant softmax: no information
    assert float(results["inverted/energy"]) == 0.5  # |-x| = |x|: the model can't tell


def test_mmd_is_still_exported():
    x = torch.randn(50, 2, generator=g())
    assert float(mmd(x, x)) == 0.0


def test_judge_training_shows_progress_when_asked(tmp_path, capsys):
    images, labels = fake_digits(40)
    x, y = images.float().div(255).mul(2).sub(1).unsqueeze(1), labels.long()
    train_feature_classifier(x, y, epochs=2, batch_size=20, generator=g(), cache_path=tmp_path / "judge.pt",
                             progress=True)
    shown = capsys.readouterr().err
    assert "training the judge" in shown and "4/4" in shown  # 2 epochs of 2 batches
    train_feature_classifier(x, y, cache_path=tmp_path / "judge.pt", progress=True)
    assert "loaded the classifier cached in" in capsys.readouterr().err
    train_feature_classifier(x, y, epochs=1, batch_size=20, generator=g())
    assert capsys.readouterr().err == ""
