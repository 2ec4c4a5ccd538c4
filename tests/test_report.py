"""The classifier-energy report on a model with known answers: prototypes that chains from noise must reach."""

from __future__ import annotations

import math

import pytest
import torch
from matplotlib import image as mpimg
from torch import Tensor, nn

from ebmlib.buffers import GaussianInit, ReplayBuffer, UniformInit
from ebmlib.evaluation import ClassifierEnergyReport, evaluate_classifier_energy, evaluate_jem, save_report_pictures
from ebmlib.models import ClassifierEnergy
from ebmlib.recipes import JEM
from ebmlib.samplers import Langevin

N_CLASSES = 4


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def prototypes() -> Tensor:
    """Class k: a dark 8x8 image with a bright bar on rows 2k, 2k+1, columns 1..6 (left-right symmetric)."""
    p = -torch.ones(N_CLASSES, 1, 8, 8)
    for k in range(N_CLASSES):
        p[k, 0, 2 * k : 2 * k + 2, 1:7] = 1.0
    return p


class NearestPrototype(nn.Module):
    """Logits -|x - p_k|^2 / 2: E(x, y) = |x - p_y|^2 / 2, so class-conditional chains contract to p_y.

    Also a judge: its features are those logits (4 numbers per image)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("p", prototypes().flatten(1))
        self.scale = nn.Parameter(torch.ones(()))  # a parameter, to see that none gets a gradient

    def features(self, x: Tensor) -> Tensor:
        return -0.5 * self.scale * torch.cdist(x.flatten(1), self.p).pow(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def labelled_images(per_class: int = 40) -> tuple[Tensor, Tensor]:
    labels = torch.arange(N_CLASSES).repeat_interleave(per_class)
    images = (prototypes()[labels] + 0.05 * torch.randn(len(labels), 1, 8, 8, generator=g(5))).clamp(-1, 1)
    return images, labels


# Step 0.5 on |x - p|^2 / 2 halves the distance to the prototype every step: 20 steps leave 1e-6 of it.
SAMPLER = Langevin(step_size=0.5, noise_std=0.01, clamp=(-1.0, 1.0))


def report(**kwargs) -> ClassifierEnergyReport:
    model = ClassifierEnergy(NearestPrototype(), N_CLASSES)
    images, labels = labelled_images()
    options = {"n_samples": 200, "n_steps": 20, "n_snapshots": 5, "progress": False, "generator": g(1)}
    return evaluate_classifier_energy(model, SAMPLER, images, labels, NearestPrototype(), **{**options, **kwargs})


def test_chains_from_noise_reach_the_prototypes_and_the_report_says_so():
    result = report()
    m = result.metrics
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())
    assert m["test_accuracy"] == 1.0 and m["judge_test_accuracy"] == 1.0
    assert m["from_noise/conditional_recognition"] == 1.0
    # Features of noise are ~30 units from the test images' (|u - p|^2 / 2 over 64 pixels); of samples, < 1.
    assert m["uniform_noise/frechet_distance"] > 100
    assert m["from_noise/frechet_distance_ratio"] < 0.01
    assert m["from_noise/frechet_distance_ratio"] == pytest.approx(
        m["from_noise/frechet_distance"] / m["uniform_noise/frechet_distance"])
    shares = [m[f"from_noise/class_share/{k}"] for k in range(N_CLASSES)]
    assert sum(shares) == pytest.approx(1.0)
    # Noise is about equally far from every prototype: 200 chains, share 0.25 each, std 0.03; 0.1 is 5 sigma.
    assert m["from_noise/class_share_min"] == min(shares) > 0.1
    # Noise and inverted images are far from every prototype; the bars are left-right symmetric, so a
    # flipped digit is a digit: AUROC 0.5 up to sampling (160 vs 160 images: std 0.032, 0.15 is > 4 sigma).
    for score in ("energy", "grad_norm"):
        assert m[f"ood_auroc/uniform_noise/{score}"] == 1.0
        assert m[f"ood_auroc/inverted/{score}"] == 1.0
        assert abs(m[f"ood_auroc/flipped/{score}"] - 0.5) < 0.15
    assert m["test_images/mean_energy"] < m["from_noise/mean_energy"] + 1 < m["uniform_noise/mean_energy"]
    assert m["max_abs_energy"] >= m["uniform_noise/mean_energy"]
    assert m["evaluation_seconds"] > 0


def test_mixture_chains_draw_a_class_per_chain_and_reach_its_prototype():
    # "mixture": unconditional chains run on E(x, y) for uniformly drawn classes y.
    m = report(unconditional_chains="mixture", n_samples=200).metrics
    shares = [m[f"from_noise/class_share/{k}"] for k in range(N_CLASSES)]
    # 200 uniform classes: share 0.25 each, std 0.03 (0.15 is > 3 sigma); every chain reaches its prototype
    assert min(shares) > 0.15 and m["from_noise/frechet_distance_ratio"] < 0.02  # (shares off 0.25 add a little)
    with pytest.raises(ValueError, match=r"unconditional_chains must be one of \('marginal', 'mixture'\), got 'joint'"):
        report(unconditional_chains="joint")


def test_the_trajectory_follows_the_first_chain_of_each_class_from_noise():
    result = report()
    assert result.trajectory is not None and result.trajectory.shape == (5, N_CLASSES, 1, 8, 8)
    assert result.trajectory_steps == [0, 5, 10, 15, 20] and result.trajectory_set == "from_noise"
    start = result.trajectory[0]
    assert float(start.min()) >= -1 and float(start.max()) <= 1 and float(start.std()) > 0.5  # U(-1, 1)
    conditional = result.samples["from_noise/conditional"]
    assert conditional.shape == (200, 1, 8, 8)
    torch.testing.assert_close(result.trajectory[-1], conditional[torch.arange(N_CLASSES) * 50])
    distance = (result.trajectory - prototypes()).flatten(2).norm(dim=2)  # (T, class)
    # From noise (~9 away) the distance halves per step down to the noise floor, 0.01 * 8 / sqrt(0.75) ~ 0.09.
    assert float(distance[0].min()) > 5 and float(distance[1].max()) < 0.5 and float(distance[-1].max()) < 0.2
    assert torch.equal(result.labels["from_noise/conditional"], torch.arange(N_CLASSES).repeat_interleave(50))
    assert set(result.energies) == {"test_images", "uniform_noise", "inverted", "flipped", "from_noise"}


def test_the_same_generator_gives_the_same_report_and_modes_are_restored():
    model = ClassifierEnergy(NearestPrototype(), N_CLASSES)
    judge = NearestPrototype()
    images, labels = labelled_images()
    runs = [evaluate_classifier_energy(model.train(), SAMPLER, images, labels, judge.train(), n_samples=40,
                                       n_steps=4, progress=False, generator=g(7)) for _ in range(2)]
    assert model.training and judge.training
    same = {k: v for k, v in runs[0].metrics.items() if k != "evaluation_seconds"}
    assert same == {k: v for k, v in runs[1].metrics.items() if k != "evaluation_seconds"}
    assert all(p.grad is None for p in [*model.parameters(), *judge.parameters()])


def test_more_starts_and_a_buffer_each_get_their_own_flat_metrics():
    buffer = prototypes().repeat(5, 1, 1, 1)  # every prototype 5 times, classes 0 1 2 3 0 1 ...
    buffer_labels = torch.arange(N_CLASSES).repeat(5)
    result = report(starts={"noise": UniformInit((1, 8, 8)), "gaussian": GaussianInit((1, 8, 8), std=0.3)},
                    buffer_samples=buffer, buffer_labels=buffer_labels, n_samples=20)
    m = result.metrics
    for prefix in ("from_noise", "from_gaussian"):
        assert m[f"{prefix}/conditional_recognition"] == 1.0
        assert {f"{prefix}/frechet_distance", f"{prefix}/class_share_min", f"{prefix}/mean_energy"} <= set(m)
    assert m["buffer/conditional_recognition"] == 1.0
    assert m["buffer/class_share_min"] == pytest.approx(0.25)  # 20 chains, 5 of each class
    assert m["buffer/frechet_distance_ratio"] < 0.01
    assert result.trajectory_set == "from_noise"  # the first start's chains
    wrong = report(buffer_samples=buffer, buffer_labels=(buffer_labels + 1) % N_CLASSES, n_samples=20)
    assert wrong.metrics["buffer/conditional_recognition"] == 0.0
    unlabelled = report(buffer_samples=buffer, n_samples=20)
    assert "buffer/conditional_recognition" not in unlabelled.metrics
    assert "buffer/frechet_distance" in unlabelled.metrics


def test_progress_is_shown_through_every_phase(capsys):
    report(n_samples=20, n_steps=4, progress=True)
    shown = capsys.readouterr().err
    assert "evaluation" in shown and "100%" in shown
    report(n_samples=20, n_steps=4, progress=False)
    assert capsys.readouterr().err == ""


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_samples must be at least n_classes=4"):
        report(n_samples=3)
    with pytest.raises(ValueError, match="n_snapshots"):
        report(n_snapshots=1)
    with pytest.raises(ValueError, match="starts must name"):
        report(starts={})
    with pytest.raises(ValueError, match=r"buffer_samples must have shape \(B, 1, 8, 8\)"):
        report(buffer_samples=torch.zeros(5, 1, 4, 4))
    with pytest.raises(ValueError, match="buffer_labels must have shape"):
        report(buffer_samples=torch.zeros(5, 1, 8, 8), buffer_labels=torch.zeros(4, dtype=torch.long))
    model = ClassifierEnergy(NearestPrototype(), N_CLASSES)
    images, labels = labelled_images()
    with pytest.raises(ValueError, match=r"test_labels must lie in \[0, 3\]"):
        evaluate_classifier_energy(model, SAMPLER, images, labels + 1, NearestPrototype(), progress=False)


def jem(initializer) -> JEM:
    model = ClassifierEnergy(NearestPrototype(), N_CLASSES)
    buffer = ReplayBuffer(20, initializer, n_classes=N_CLASSES, generator=g(2))
    return JEM(model, SAMPLER, buffer, torch.optim.SGD(model.parameters(), lr=0.0))


def test_evaluate_jem_uses_the_recipes_sampler_initializer_and_buffer():
    recipe = jem(GaussianInit((1, 8, 8), std=0.3))
    recipe.buffer.update(torch.arange(20), prototypes().repeat_interleave(5, dim=0))  # slots of class k hold p_k
    images, labels = labelled_images()
    result = evaluate_jem(recipe, images, labels, NearestPrototype(), n_samples=20, n_steps=20, progress=False,
                          generator=g(3))
    m = result.metrics
    assert m["buffer/conditional_recognition"] == 1.0  # each chain judged by its slot's class
    assert m["from_initializer/conditional_recognition"] == 1.0 and m["from_noise/conditional_recognition"] == 1.0
    assert torch.equal(result.labels["buffer"], torch.arange(N_CLASSES).repeat_interleave(5))
    alone = evaluate_jem(recipe, images, labels, NearestPrototype(), include_initializer=False, n_samples=20,
                         n_steps=2, progress=False, generator=g(3))
    assert not any(name.startswith("from_initializer") for name in alone.metrics)


def test_the_hardest_ood_cases_are_the_least_likely_test_images_and_the_most_likely_outsiders():
    images, _ = labelled_images()  # report()'s test images: 160, of which the 20 hardest are kept
    shifted = {"shifted": lambda x, generator: x.roll(1, dims=-1)}  # the bar moves; the closest stay near 0
    result = report(ood_transforms=shifted)
    model = ClassifierEnergy(NearestPrototype(), N_CLASSES)
    energy = model.energy(images).detach()
    outside = images.roll(1, dims=-1)
    outside_energy = model.energy(outside).detach()
    kept = result.hardest_cases
    assert set(kept) == {"test_images", "shifted"} and kept["test_images"].shape == (20, 1, 8, 8)
    torch.testing.assert_close(kept["test_images"], images[energy.argsort(descending=True)[:20]])
    torch.testing.assert_close(kept["shifted"], outside[outside_energy.argsort()[:20]])
    assert model.energy(kept["test_images"]).detach().diff().le(1e-6).all()  # highest energy first


def test_report_pictures_show_one_row_per_class(tmp_path):
    recipe = jem(UniformInit((1, 8, 8)))
    images, labels = labelled_images()
    result = evaluate_jem(recipe, images, labels, NearestPrototype(), n_samples=20, n_steps=10, progress=False,
                          generator=g(4))
    written = save_report_pictures(result, tmp_path / "pictures", class_names=["a", "b", "c", "d"], per_class=3)
    assert set(written) == {"chain_evolution", "samples_conditional", "samples_unconditional", "energy_histogram",
                            "ood_hardest_cases"}
    for path in written.values():
        assert path.parent == tmp_path / "pictures" and mpimg.imread(path).shape[0] > 50
    with pytest.raises(ValueError, match="per_class"):
        save_report_pictures(result, tmp_path, per_class=0)


@pytest.mark.parametrize("chain_steps_per_update", [1, 3 * 200, 10**9])
def test_sampling_in_short_pieces_for_the_progress_bar_draws_the_same_chains(monkeypatch, chain_steps_per_update):
    # Pieces of 1, 3 (then 1 to reach a snapshot) or 4 steps: the chains are Markov, so the same report.
    import ebmlib.evaluation.report as module

    reference = report(n_steps=10, n_snapshots=4)  # snapshots at steps 0, 4, 8, 10
    monkeypatch.setattr(module, "_CHAIN_STEPS_PER_UPDATE", chain_steps_per_update)
    pieces = report(n_steps=10, n_snapshots=4)
    assert pieces.trajectory_steps == [0, 4, 8, 10]
    torch.testing.assert_close(pieces.trajectory, reference.trajectory)
    for name, x in reference.samples.items():
        torch.testing.assert_close(pieces.samples[name], x)


def test_a_calibration_set_fits_the_temperature_and_reports_the_calibrated_ece():
    class Timid(NearestPrototype):  # logits / 50: right about every image, and about 45% sure of it
        def forward(self, x: Tensor) -> Tensor:
            return self.features(x) / 50

    model = ClassifierEnergy(Timid(), N_CLASSES)
    images, labels = labelled_images()
    held_out = labelled_images(per_class=10)
    options = {"n_samples": 40, "n_steps": 2, "progress": False}
    m = evaluate_classifier_energy(model, SAMPLER, images, labels, NearestPrototype(), generator=g(1),
                                   **options).metrics
    assert "calibrated/temperature" not in m
    calibrated = evaluate_classifier_energy(model, SAMPLER, images, labels, NearestPrototype(),
                                            calibration_set=held_out, generator=g(1), **options).metrics
    assert m["test_accuracy"] == calibrated["test_accuracy"] == 1.0
    assert m["test_expected_calibration_error"] > 0.4  # confidence ~0.45-0.6 at accuracy 1
    assert calibrated["calibrated/temperature"] < 0.2  # sharpened: an under-confident classifier has T < 1
    assert calibrated["calibrated/test_expected_calibration_error"] < 0.01
    # everything but the calibrated pair is the model's own: the same numbers with or without the set
    assert {k: v for k, v in calibrated.items() if not k.startswith("calibrated/") and "seconds" not in k} == {
        k: v for k, v in m.items() if "seconds" not in k}


def test_mixture_runs_are_measured_beside_chains_on_the_marginal_energy_and_recognition_is_seen_early():
    # Mixture chains follow E(x, y) of uniform classes; the marginal chains follow E(x) = -logsumexp f(x):
    # both reach the prototypes here (E(x) has a minimum at each), so both cover the four classes.
    result = report(unconditional_chains="mixture", recognition_steps=(1, 10))
    m = result.metrics
    # (< 0.02: class shares drawn off 0.25 add a little, as in the mixture test above)
    assert m["from_noise/frechet_distance_ratio"] < 0.02 and m["from_noise/marginal/frechet_distance_ratio"] < 0.02
    assert m["from_noise/marginal/class_share_min"] > 0.1
    assert result.samples["from_noise/marginal"].shape == (200, 1, 8, 8)
    # one step halves the distance to the prototype: the judge (nearest prototype) already sees most classes
    # right; after 10 of the 20 steps all of them, like at the end
    assert m["from_noise/conditional_recognition_at_10_steps"] == m["from_noise/conditional_recognition"] == 1.0
    assert 0.25 < m["from_noise/conditional_recognition_at_1_steps"] <= 1.0
    marginal = report(unconditional_chains="marginal").metrics  # the same chains under both names
    assert marginal["from_noise/marginal/frechet_distance"] == marginal["from_noise/frechet_distance"]
    assert "from_noise/conditional_recognition_at_64_steps" not in marginal  # 64 is past n_steps = 20


def test_the_early_recognition_is_that_of_chains_run_for_that_many_steps():
    # The chains seen at step 5 of 20 are those of a 5-step report with the same generator.
    early = report(n_steps=20, recognition_steps=(5,)).metrics["from_noise/conditional_recognition_at_5_steps"]
    short = report(n_steps=5).metrics["from_noise/conditional_recognition"]
    assert early == short
