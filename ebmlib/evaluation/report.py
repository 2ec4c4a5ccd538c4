"""One report for a classifier energy (JEM): classification, calibration, OOD detection and samples from noise.

:func:`evaluate_classifier_energy` measures a :class:`~ebmlib.models.ClassifierEnergy`
with a sampler; :func:`evaluate_jem` does the same for a trained recipe, adding
chains from the recipe's own initializer and its replay buffer;
:func:`save_report_pictures` draws what the report found.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_batch, check_choice, check_labels
from ..buffers import Initializer, UniformInit
from ..models import ClassifierEnergy
from ..recipes import JEM
from ..recipes.jem import UNCONDITIONAL_CHAINS
from ..samplers import Sampler
from .calibration import fit_temperature
from .classification import accuracy, batched, expected_calibration_error
from .ood import OOD_SCORES, OOD_TRANSFORMS, auroc, ood_scores
from .pictures import save_chain_evolution, save_energy_histogram, save_sample_comparison
from .sample_quality import FeatureClassifier, frechet_distance, recognition_rate
from .trajectories import chain_trajectory

Transform = Callable[[Tensor, torch.Generator | None], Tensor]

_CHAIN_STEPS_PER_UPDATE = 8192
"""Chains times steps between two progress-bar updates of the report's sampling (a few seconds on a CPU)."""
HARDEST_CASES = 20
"""Images kept per set in :attr:`ClassifierEnergyReport.hardest_cases`."""


@dataclass
class ClassifierEnergyReport:
    """What :func:`evaluate_classifier_energy` measured, and the samples it drew.

    Attributes
    ----------
    metrics : dict
        Metric name -> value (a float), flat names ready for ``json.dump``
        (listed in :func:`evaluate_classifier_energy`).
    samples : dict
        Set name -> final chains ``(n, *event_shape)``: ``"<set>/conditional"`` and
        ``"<set>/unconditional"`` for every start ``<set>`` (``from_noise``, ...), and
        ``"buffer"`` (the replay buffer's chains, when given).
    labels : dict
        Set name -> int64 ``(n,)``: the intended class of each conditional sample
        (``"<set>/conditional"``) and of each buffer chain (``"buffer"``).
    trajectory : Tensor, shape ``(T, n_classes, *event_shape)``
        One class-conditional chain per class from uniform noise, seen at ``trajectory_steps``.
    trajectory_steps : list of int
        The step of each snapshot, ``0`` (the noise) first.
    trajectory_set : str
        The set whose conditional chains the trajectory follows (``"from_noise"`` by default).
    energies : dict
        Set name -> :math:`E(x)` ``(n,)`` of the test images, each OOD set, the
        unconditional samples of each start and the buffer's chains (for
        :func:`~ebmlib.evaluation.pictures.save_energy_histogram`).
    hardest_cases : dict
        Set name -> ``(k, *event_shape)``: the images that cost the energy score its
        OOD AUROC, worst first: the ``k`` test images of highest energy
        (``"test_images"``) and the ``k`` images of lowest energy of each OOD set.

    Examples
    --------
    >>> report = ClassifierEnergyReport(metrics={"test_accuracy": 0.98})
    >>> report.metrics["test_accuracy"], report.samples
    (0.98, {})
    """

    metrics: dict[str, float]
    samples: dict[str, Tensor] = field(default_factory=dict)
    labels: dict[str, Tensor] = field(default_factory=dict)
    trajectory: Tensor | None = None
    trajectory_steps: list[int] = field(default_factory=list)
    trajectory_set: str = ""
    energies: dict[str, Tensor] = field(default_factory=dict)
    hardest_cases: dict[str, Tensor] = field(default_factory=dict)


def evaluate_classifier_energy(
    model: ClassifierEnergy,
    sampler: Sampler,
    test_images: Tensor,
    test_labels: Tensor,
    judge: FeatureClassifier,
    *,
    starts: Mapping[str, Initializer] | None = None,
    noise: Initializer | None = None,
    buffer_samples: Tensor | None = None,
    buffer_labels: Tensor | None = None,
    calibration_set: tuple[Tensor, Tensor] | None = None,
    unconditional_chains: str = "marginal",
    n_samples: int = 1000,
    n_steps: int = 256,
    n_snapshots: int = 9,
    recognition_steps: Sequence[int] = (64,),
    ood_transforms: Mapping[str, Transform] | None = None,
    max_ood_images: int | None = 2000,
    generator: torch.Generator | None = None,
    progress: bool = True,
    batch_size: int = 500,
) -> ClassifierEnergyReport:
    r"""Measure a classifier energy as a classifier, an OOD detector and a generator of samples from noise.

    For the model's logits :math:`f(x)`, :math:`E(x) = -\operatorname{logsumexp} f(x)`
    and :math:`E(x, y) = -f(x)[y]`. The report computes, with flat metric names:

    - ``test_accuracy``, ``test_expected_calibration_error`` (15 bins) and the
      judge's own ``judge_test_accuracy``; with a ``calibration_set``,
      ``calibrated/temperature``, the temperature :math:`T` fitted on it
      (:func:`~ebmlib.evaluation.calibration.fit_temperature`), and
      ``calibrated/test_expected_calibration_error``, the ECE of
      :math:`\operatorname{softmax}(f(x) / T)` (Guo et al. 2017; the predicted classes,
      the energies and every other metric are those of the model itself);
    - ``ood_auroc/<set>/<score>``: AUROC of each score of
      :func:`~ebmlib.evaluation.ood.ood_scores` (``energy``, ``max_softmax``,
      ``grad_norm``) for test images against each OOD set (default: uniform
      noise, inverted and flipped images), on the first ``max_ood_images`` test images;
    - for every start ``<name>`` in ``starts`` (default ``noise``: :math:`U(-1, 1)`), with
      ``<set>`` = ``from_<name>``, chains of ``n_steps`` sampler steps:

      - ``<set>/conditional_recognition``: the share of ``n_samples``
        class-conditional chains (``n_samples // n_classes`` per class) that the judge
        assigns to the class they were drawn for, and ``<set>/conditional_frechet_distance``;
      - ``<set>/frechet_distance``: Fréchet distance, in the judge's features,
        between ``n_samples`` unconditional chains and the test images, and
        ``<set>/frechet_distance_ratio``, that distance over uniform noise's
        (``uniform_noise/frechet_distance``, from as many noise images);
      - ``<set>/class_share/<k>``: the share of unconditional samples the judge
        puts in class ``k``, and their minimum ``<set>/class_share_min``
        (a generator that covers every class keeps it near ``1 / n_classes``);
      - ``<set>/marginal/frechet_distance_ratio``, ``<set>/marginal/class_share_min``, ...:
        the same for chains on the model's own :math:`E(x)` (``sampler.sample(model, x)``),
        whatever ``unconditional_chains`` is (for ``"marginal"`` they are the chains above);
      - ``<set>/conditional_recognition_at_<s>_steps``: the conditional chains' recognition
        after each of the ``recognition_steps`` (the same chains, seen earlier);
    - ``buffer/...``: the same for the replay buffer's chains (recognition by
      their slots' classes, Fréchet distance of up to ``n_samples`` of them);
    - ``<set>/mean_energy`` for every set above, the test images and the OOD
      sets, and ``max_abs_energy`` over all of them (a diverged model shows here);
    - ``evaluation_seconds``: the report's own wall time.

    The class-conditional chains from the first start also give the report's
    trajectory: one chain per class, seen at ``n_snapshots`` evenly spaced steps.
    The report also keeps the OOD detector's hardest cases: the test images of
    highest energy and each OOD set's images of lowest energy (20 of each).
    Sampling is the cost: ``2 * len(starts) * n_samples * n_steps`` chain steps (``3 * ...`` for mixture chains).
    Everything else runs without gradients except the ``grad_norm`` OOD score.
    The model and the judge are evaluated in eval mode and put back as they were.

    Parameters
    ----------
    model : ClassifierEnergy
        Gives ``logits(x)`` ``(B, n_classes)`` and ``energy(x, y=None)``.
    sampler : Sampler
        Runs the chains (``sampler.sample(model, x, n_steps=, y=, generator=)``).
    test_images : Tensor, shape ``(N, *event_shape)``
        Held-out images, values in ``[-1, 1]``, on the model's device.
    test_labels : Tensor of int64, shape ``(N,)``
    judge : FeatureClassifier
        An independent classifier: ``judge(x)`` -> logits and ``judge.features(x)``
        -> ``(B, D)`` features, e.g. from :func:`~ebmlib.evaluation.sample_quality.train_feature_classifier`
        (any module with both methods will do).
    starts : mapping of str to Initializer, optional
        Where chains start; default ``{"noise": noise}``. The first one's conditional
        chains give the trajectory.
    noise : Initializer, optional
        The uniform noise that the Fréchet-distance ratios compare with (and the
        default start); default uniform over the test images' range (``[-1, 1]`` for
        images scaled so).
    buffer_samples : Tensor, shape ``(M, *event_shape)``, optional
        A replay buffer's chains.
    buffer_labels : Tensor of int64, shape ``(M,)``, optional
        Their classes; without them the buffer's recognition rate is left out.
    calibration_set : (Tensor, Tensor), optional
        Held-out images ``(N, *event_shape)`` and labels ``(N,)`` (not trained on) to fit
        the softmax temperature on.
    unconditional_chains : {"marginal", "mixture"}
        How the unconditional chains run: on :math:`E(x)`, or (``"mixture"``) on
        :math:`E(x, y)` for classes :math:`y` drawn uniformly, as
        :class:`~ebmlib.recipes.JEM` does with that setting.
    n_samples : int
        Chains per set, ``>= n_classes`` (and ``>= 2``).
    n_steps : int
        Sampler steps of every chain.
    n_snapshots : int
        Snapshots in the trajectory, the start and the end included (``>= 2``).
    recognition_steps : sequence of int
        Earlier steps (below ``n_steps``) at which the conditional chains are judged too.
    ood_transforms : mapping, optional
        Name -> ``f(x, generator)`` making an OOD set; default :data:`~ebmlib.evaluation.ood.OOD_TRANSFORMS`.
    max_ood_images : int, optional
        Test images used for the OOD scores (``None``: all).
    generator : torch.Generator, optional
        Source of every random draw, on the images' device.
    progress : bool
        Show a tqdm bar through every phase (its unit: one chain advanced one step,
        or one image scored with a gradient).
    batch_size : int
        Images per forward pass when scoring.

    Returns
    -------
    ClassifierEnergyReport
        The metrics under flat names, and the samples and scores the pictures show.

    Examples
    --------
    >>> from torch import nn
    >>> from ebmlib.evaluation import FeatureClassifier
    >>> from ebmlib.models import ClassifierEnergy
    >>> from ebmlib.samplers import Langevin
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), n_classes=10)
    >>> images, labels = torch.rand(40, 1, 28, 28) * 2 - 1, torch.arange(40) % 10
    >>> report = evaluate_classifier_energy(
    ...     model, Langevin(step_size=1.0, noise_std=0.01, clamp=(-1.0, 1.0)), images, labels,
    ...     FeatureClassifier().eval(), n_samples=20, n_steps=4, n_snapshots=3, progress=False,
    ...     generator=torch.Generator().manual_seed(0))
    >>> report.metrics["from_noise/conditional_recognition"] <= 1.0, report.trajectory.shape
    (True, torch.Size([3, 10, 1, 28, 28]))
    """
    started = time.perf_counter()
    n_classes = _check_report_inputs(model, test_images, test_labels, buffer_samples, buffer_labels, n_samples,
                                     unconditional_chains, n_steps, n_snapshots)
    noise = (_uniform_over(test_images) if noise is None else noise).to(device=test_images.device,
                                                                        dtype=test_images.dtype)
    starts = {"noise": noise} if starts is None else starts
    if not starts:
        raise ValueError("starts must name at least one Initializer, got an empty mapping")
    transforms = OOD_TRANSFORMS if ood_transforms is None else ood_transforms
    ood_images = test_images if max_ood_images is None else test_images[:max_ood_images]
    per_start = n_samples // n_classes * n_classes + n_samples * (1 if unconditional_chains == "marginal" else 2)
    work = len(starts) * n_steps * per_start + (1 + len(transforms)) * len(ood_images)
    bar = tqdm(total=work, disable=not progress, desc="evaluation", unit="step", unit_scale=True, dynamic_ncols=True)
    modes = model.training, judge.training
    model.eval()
    judge.eval()
    try:
        bar.set_description("evaluation: classifying the test images")
        metrics: dict[str, Tensor | float] = classification_metrics(model, test_images, test_labels,
                                                                     calibration_set, batch_size)
        report = ClassifierEnergyReport(metrics={})
        metrics["judge_test_accuracy"] = accuracy(batched(judge, test_images, batch_size), test_labels)
        ood, report.energies, report.hardest_cases = ood_metrics(model, ood_images, transforms, generator,
                                                                 batch_size, bar)
        metrics.update(ood)
        judge_of = SampleJudge(judge, test_images, noise(n_samples, None, generator), n_classes, batch_size)
        metrics["uniform_noise/frechet_distance"] = judge_of.noise_frechet_distance
        chains = _ChainRunner(model, sampler, n_steps, generator, bar)
        report.trajectory_steps = sorted({min(r * math.ceil(n_steps / (n_snapshots - 1)), n_steps)
                                          for r in range(n_snapshots)})
        report.trajectory_set = f"from_{next(iter(starts))}"
        for name, initializer in starts.items():
            _chains_from(report, metrics, f"from_{name}", initializer, chains, judge_of, n_samples, recognition_steps,
                         unconditional_chains)
        if buffer_samples is not None:
            bar.set_description("evaluation: the replay buffer's chains")
            _judge_buffer(report, metrics, buffer_samples, buffer_labels, judge_of, model.energy, n_samples,
                          generator)
        report.energies["uniform_noise"] = batched(model.energy, judge_of.noise, batch_size)
        for name, values in report.energies.items():
            metrics[f"{name}/mean_energy"] = values.mean()
        metrics["max_abs_energy"] = torch.stack([e.abs().max() for e in report.energies.values()]).max()
        bar.set_description("evaluation: done")
    finally:
        bar.close()
        model.train(modes[0])
        judge.train(modes[1])
    metrics["evaluation_seconds"] = time.perf_counter() - started
    report.metrics = {name: float(value) for name, value in metrics.items()}
    return report


def classification_metrics(
    model: ClassifierEnergy,
    images: Tensor,
    labels: Tensor,
    calibration_set: tuple[Tensor, Tensor] | None = None,
    batch_size: int = 500,
) -> dict[str, Tensor | float]:
    """``test_accuracy`` and ``test_expected_calibration_error`` (15 bins) of the model's logits; with a
    ``calibration_set``, ``calibrated/temperature`` fitted on it and ``calibrated/test_expected_calibration_error``.

    Examples
    --------
    >>> from torch import nn
    >>> model = ClassifierEnergy(nn.Linear(2, 3), n_classes=3)
    >>> sorted(classification_metrics(model, torch.randn(8, 2), torch.arange(8) % 3))
    ['test_accuracy', 'test_expected_calibration_error']
    """
    logits = batched(model.logits, images, batch_size)
    metrics: dict[str, Tensor | float] = {
        "test_accuracy": accuracy(logits, labels),
        "test_expected_calibration_error": expected_calibration_error(logits.softmax(dim=1), labels),
    }
    if calibration_set is not None:
        temperature = fit_temperature(batched(model.logits, calibration_set[0], batch_size), calibration_set[1])
        metrics["calibrated/temperature"] = temperature
        metrics["calibrated/test_expected_calibration_error"] = expected_calibration_error(
            (logits / temperature).softmax(dim=1), labels)
    return metrics


def ood_metrics(
    model: ClassifierEnergy,
    images: Tensor,
    transforms: Mapping[str, Transform],
    generator: torch.Generator | None = None,
    batch_size: int = 500,
    bar: Any = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """OOD detection of each set ``transform(images)`` against ``images``, by every score of
    :func:`~ebmlib.evaluation.ood.ood_scores`.

    Returns
    -------
    metrics : dict
        ``ood_auroc/<set>/<score>``.
    energies : dict
        ``"test_images"`` and ``<set>`` -> :math:`E(x)` of the images.
    hardest_cases : dict
        ``"test_images"`` -> the ``HARDEST_CASES`` (20) images of highest energy, and
        ``<set>`` -> the set's images of lowest energy, worst first.

    Examples
    --------
    >>> from torch import nn
    >>> model = ClassifierEnergy(nn.Linear(2, 3), n_classes=3)
    >>> metrics, energies, hardest = ood_metrics(model, torch.randn(8, 2), {"shifted": lambda x, g: x + 5})
    >>> sorted(metrics), hardest["shifted"].shape
    (['ood_auroc/shifted/energy', 'ood_auroc/shifted/grad_norm', 'ood_auroc/shifted/max_softmax'], torch.Size([8, 2]))
    """
    inside = ood_scores(model, images, batch_size)
    n_hardest = min(HARDEST_CASES, len(images))
    metrics: dict[str, Tensor] = {}
    energies = {"test_images": -inside["energy"]}  # the score is -E(x)
    hardest_cases = {"test_images": images[inside["energy"].argsort()[:n_hardest]]}
    if bar is not None:
        bar.update(len(images))
    for name, transform in transforms.items():
        if bar is not None:
            bar.set_description(f"evaluation: OOD scores of {name}")
        outside_images = transform(images, generator)
        outside = ood_scores(model, outside_images, batch_size)
        metrics.update({f"ood_auroc/{name}/{score}": auroc(inside[score], outside[score]) for score in OOD_SCORES})
        energies[name] = -outside["energy"]
        hardest_cases[name] = outside_images[outside["energy"].argsort(descending=True)[:n_hardest]]
        if bar is not None:
            bar.update(len(images))
    return metrics, energies, hardest_cases


class SampleJudge:
    """An independent classifier's verdicts on samples: Fréchet distance to the test images, in its
    features and relative to uniform noise's, and the share of each class.

    Parameters
    ----------
    judge : FeatureClassifier
        ``judge(x)`` -> logits, ``judge.features(x)`` -> ``(B, D)``.
    test_images : Tensor, shape ``(N, *event_shape)``
    noise : Tensor, shape ``(M, *event_shape)``
        Uniform noise, the reference of the distance ratio.
    n_classes : int
    batch_size : int

    Examples
    --------
    >>> from ebmlib.evaluation import FeatureClassifier
    >>> g = torch.Generator().manual_seed(0)
    >>> images = torch.rand(40, 1, 28, 28, generator=g) * 2 - 1
    >>> judge_of = SampleJudge(FeatureClassifier().eval(), images, torch.rand(40, 1, 28, 28, generator=g), 10)
    >>> verdict = judge_of.unconditional(images)
    >>> float(verdict["frechet_distance_ratio"]) < 1e-3, len([k for k in verdict if k.startswith("class_share/")])
    (True, 10)
    """

    def __init__(self, judge: FeatureClassifier, test_images: Tensor, noise: Tensor, n_classes: int,
                 batch_size: int = 500) -> None:
        self.judge, self.n_classes, self.batch_size, self.noise = judge, n_classes, batch_size, noise
        self.test_features = batched(judge.features, test_images, batch_size)
        self.noise_frechet_distance = self.frechet_distance(noise)

    def frechet_distance(self, samples: Tensor) -> Tensor:
        """The Fréchet distance between the samples' features and the test images'."""
        return frechet_distance(self.test_features, batched(self.judge.features, samples, self.batch_size))

    def unconditional(self, samples: Tensor) -> dict[str, Tensor]:
        """``frechet_distance``, ``frechet_distance_ratio`` (over noise's), ``class_share/<k>`` and
        ``class_share_min`` of unconditional samples."""
        distance = self.frechet_distance(samples)
        predicted = batched(self.judge, samples, self.batch_size).argmax(dim=1)
        share = torch.bincount(predicted, minlength=self.n_classes)[: self.n_classes].to(samples.dtype) / len(samples)
        return {"frechet_distance": distance, "frechet_distance_ratio": distance / self.noise_frechet_distance,
                **{f"class_share/{k}": share[k] for k in range(self.n_classes)}, "class_share_min": share.min()}


class _ChainRunner:
    """A sampler's chains of ``n_steps`` steps, kept at chosen steps, in pieces short enough for the progress
    bar to move every few seconds (:func:`~ebmlib.evaluation.trajectories.chain_trajectory`)."""

    def __init__(self, model: ClassifierEnergy, sampler: Sampler, n_steps: int, generator: torch.Generator | None,
                 bar: Any) -> None:
        self.model, self.sampler, self.n_steps, self.generator, self.bar = model, sampler, n_steps, generator, bar

    def run(self, start: Tensor, y: Tensor | None, keep_at: Sequence[int] = ()) -> dict[int, Tensor]:
        """Step -> the chains after that many steps, for ``0``, each of ``keep_at`` and ``n_steps``."""
        piece = max(1, _CHAIN_STEPS_PER_UPDATE // start.shape[0])
        kept = sorted({0, self.n_steps, *(s for s in keep_at if 0 < s < self.n_steps)})
        record = sorted({*kept, *range(piece, self.n_steps, piece)} - {0})
        done = [0]

        def advance(steps: int, x: Tensor) -> None:
            self.bar.update(x.shape[0] * (steps - done[0]))
            done[0] = steps

        path = chain_trajectory(self.sampler, self.model, start, self.n_steps, record, y, self.generator, advance)
        index = {step: i for i, step in enumerate([0, *record])}
        return {step: path[index[step]] for step in kept}


def _chains_from(
    report: ClassifierEnergyReport, metrics: dict[str, Tensor | float], prefix: str, initializer: Initializer,
    chains: _ChainRunner, judge_of: SampleJudge, n_samples: int, recognition_steps: Sequence[int],
    unconditional_chains: str,
) -> None:
    """Class-conditional chains, the recipe's kind of unconditional chains and chains on E(x) from one start,
    judged into ``metrics`` and kept in ``report``."""
    n_classes, n_steps, generator = judge_of.n_classes, chains.n_steps, chains.generator
    dtype, device = judge_of.noise.dtype, judge_of.noise.device
    chains.bar.set_description(f"evaluation: class-conditional chains {prefix}")
    intended = torch.arange(n_classes, device=device).repeat_interleave(n_samples // n_classes)
    at = chains.run(initializer(len(intended), intended, generator).to(dtype), intended,
                    [*recognition_steps, *report.trajectory_steps])
    if report.trajectory is None:  # one chain per class, from the first start
        report.trajectory = torch.stack([at[step][:: n_samples // n_classes] for step in report.trajectory_steps])
    report.samples[f"{prefix}/conditional"], report.labels[f"{prefix}/conditional"] = at[n_steps], intended
    for step in sorted(set(at) & set(recognition_steps)) + [n_steps]:
        suffix = "" if step == n_steps else f"_at_{step}_steps"
        metrics[f"{prefix}/conditional_recognition{suffix}"] = recognition_rate(judge_of.judge, at[step], intended,
                                                                                judge_of.batch_size)
    metrics[f"{prefix}/conditional_frechet_distance"] = judge_of.frechet_distance(at[n_steps])
    for kind in dict.fromkeys([unconditional_chains, "marginal"]):  # the recipe's kind, then chains on E(x)
        chains.bar.set_description(f"evaluation: {kind} chains {prefix}")
        classes = torch.randint(n_classes, (n_samples,), generator=generator, device=device) \
            if kind == "mixture" else None
        x = chains.run(initializer(n_samples, classes, generator).to(dtype), classes)[n_steps]
        recipes_kind = kind == unconditional_chains  # judged as <prefix>/...; chains on E(x) as <prefix>/marginal/...
        names = ([prefix] if recipes_kind else []) + ([f"{prefix}/marginal"] if kind == "marginal" else [])
        verdict = judge_of.unconditional(x)
        for name in names:
            metrics.update({f"{name}/{key}": value for key, value in verdict.items()})
        report.samples[f"{prefix}/unconditional" if recipes_kind else f"{prefix}/marginal"] = x
        report.energies[names[0]] = batched(chains.model.energy, x, judge_of.batch_size)


def _judge_buffer(
    report: ClassifierEnergyReport, metrics: dict[str, Tensor | float], buffer_samples: Tensor,
    buffer_labels: Tensor | None, judge_of: SampleJudge, energy: Callable[[Tensor], Tensor], n_samples: int,
    generator: torch.Generator | None,
) -> None:
    """The replay buffer's chains judged into ``report``: up to ``n_samples`` of them as unconditional
    samples, all of them by their slots' classes."""
    chosen = torch.randperm(buffer_samples.shape[0], generator=generator, device=buffer_samples.device)[:n_samples]
    report.samples["buffer"] = buffer_samples
    verdict = judge_of.unconditional(buffer_samples[chosen])
    metrics.update({f"buffer/{key}": value for key, value in verdict.items()})
    report.energies["buffer"] = batched(energy, buffer_samples[chosen], judge_of.batch_size)
    if buffer_labels is not None:
        report.labels["buffer"] = buffer_labels
        metrics["buffer/conditional_recognition"] = recognition_rate(judge_of.judge, buffer_samples,
                                                                            buffer_labels, judge_of.batch_size)


def _uniform_over(images: Tensor) -> UniformInit:
    """Uniform noise over the images' range of values (``[-1, 1]`` for images scaled so)."""
    return UniformInit(tuple(images.shape[1:]), float(images.min()), float(images.max()))


def _check_report_inputs(
    model: ClassifierEnergy, test_images: Tensor, test_labels: Tensor, buffer_samples: Tensor | None,
    buffer_labels: Tensor | None, n_samples: int, unconditional_chains: str, n_steps: int, n_snapshots: int,
) -> int:
    """Raise a clear error for arguments :func:`evaluate_classifier_energy` cannot use; return ``n_classes``."""
    check_batch(test_images, "test_images")
    check_labels(test_labels, test_images.shape[0], model.n_classes, "test_labels")
    n_classes = model.n_classes
    if n_samples < max(n_classes, 2):
        raise ValueError(f"n_samples must be at least n_classes={n_classes} (and 2), got {n_samples}")
    check_choice(unconditional_chains, UNCONDITIONAL_CHAINS, "unconditional_chains")
    if n_steps < 1 or n_snapshots < 2:
        raise ValueError(f"n_steps must be >= 1 and n_snapshots >= 2, got n_steps={n_steps}, n_snapshots={n_snapshots}")
    if buffer_samples is not None:
        check_batch(buffer_samples, "buffer_samples", tuple(test_images.shape[1:]))
        if buffer_labels is not None:
            check_labels(buffer_labels, buffer_samples.shape[0], n_classes, "buffer_labels")
    return n_classes


def evaluate_jem(
    recipe: JEM,
    test_images: Tensor,
    test_labels: Tensor,
    judge: FeatureClassifier,
    *,
    include_initializer: bool = True,
    extra_starts: Mapping[str, Initializer] | None = None,
    calibration_set: tuple[Tensor, Tensor] | None = None,
    n_samples: int = 1000,
    n_steps: int = 256,
    n_snapshots: int = 9,
    recognition_steps: Sequence[int] = (64,),
    max_ood_images: int | None = 2000,
    generator: torch.Generator | None = None,
    progress: bool = True,
    batch_size: int = 500,
) -> ClassifierEnergyReport:
    """:func:`evaluate_classifier_energy` for a trained JEM recipe: its model, sampler, replay buffer and
    kind of unconditional chains.

    Chains start from uniform noise on ``[-1, 1]`` (set ``from_noise``) and, with
    ``include_initializer``, from the recipe's buffer initializer (set
    ``from_initializer``, e.g. JEM++'s per-class Gaussians); the buffer's chains
    are judged as set ``buffer``, each with the class of its slot.

    Parameters
    ----------
    recipe : JEM
        Its ``model``, ``sampler`` and ``buffer`` are used as they are.
    test_images, test_labels, judge
        As in :func:`evaluate_classifier_energy`.
    include_initializer : bool
        Also run chains from the buffer's initializer (set ``from_initializer``;
        twice the sampling). Leave it off when that initializer is uniform noise.
    extra_starts : mapping of str to Initializer, optional
        More starts, each measured as set ``from_<name>`` (e.g. informative
        per-class Gaussians beside the noise).
    calibration_set, n_samples, n_steps, n_snapshots, recognition_steps, max_ood_images, generator, progress, batch_size
        As in :func:`evaluate_classifier_energy`.

    Returns
    -------
    ClassifierEnergyReport
        As :func:`evaluate_classifier_energy` returns it, with the recipe's own chains measured too.

    Examples
    --------
    >>> from torch import nn
    >>> from ebmlib.buffers import ReplayBuffer, UniformInit
    >>> from ebmlib.evaluation import FeatureClassifier
    >>> from ebmlib.models import ClassifierEnergy
    >>> from ebmlib.samplers import Langevin
    >>> model = ClassifierEnergy(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), n_classes=10)
    >>> recipe = JEM(model, Langevin(step_size=1.0, noise_std=0.01, clamp=(-1.0, 1.0)),
    ...              ReplayBuffer(100, UniformInit((1, 28, 28)), n_classes=10),
    ...              torch.optim.Adam(model.parameters()))
    >>> images, labels = torch.rand(40, 1, 28, 28) * 2 - 1, torch.arange(40) % 10
    >>> report = evaluate_jem(recipe, images, labels, FeatureClassifier(), n_samples=20, n_steps=2,
    ...                       progress=False, generator=torch.Generator().manual_seed(0))
    >>> sorted({name.split("/")[0] for name in report.metrics if name.startswith(("from_", "buffer"))})
    ['buffer', 'from_initializer', 'from_noise']
    """
    buffer = recipe.buffer
    noise = buffer.initializer if isinstance(buffer.initializer, UniformInit) else _uniform_over(test_images)
    starts: dict[str, Initializer] = {"noise": noise}
    if include_initializer:
        starts["initializer"] = buffer.initializer
    starts.update(extra_starts or {})
    return evaluate_classifier_energy(
        recipe.model, recipe.sampler, test_images, test_labels, judge, starts=starts, noise=starts["noise"],
        buffer_samples=buffer.samples, buffer_labels=buffer.slot_labels(), calibration_set=calibration_set,
        unconditional_chains=recipe.unconditional_chains, n_samples=n_samples, n_steps=n_steps,
        n_snapshots=n_snapshots, recognition_steps=recognition_steps, max_ood_images=max_ood_images,
        generator=generator, progress=progress, batch_size=batch_size,
    )


def save_report_pictures(
    report: ClassifierEnergyReport,
    folder: str | os.PathLike[str],
    class_names: Sequence[str] | None = None,
    per_class: int = 10,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> dict[str, Path]:
    """Draw a :class:`ClassifierEnergyReport`: chains from noise, samples side by side, energy histogram.

    Writes into ``folder``:

    - ``chain_evolution.png``: one class-conditional chain per class (a row),
      from uniform noise (the first column) to its final sample;
    - ``samples_conditional.png``: ``per_class`` class-conditional samples per
      row (one row per class) for each start, beside the replay buffer's chains;
    - ``samples_unconditional.png``: unconditional samples for each start;
    - ``energy_histogram.png``: energies of test images, samples, noise, inverted and flipped images;
    - ``ood_hardest_cases.png``: the test images the energy rates least likely beside
      the images of each OOD set it rates most likely (``report.hardest_cases``).

    Parameters
    ----------
    report : ClassifierEnergyReport
    folder : path-like
        Created if missing.
    class_names : sequence of str, optional
        Row labels of the chain picture (default ``"0"``, ``"1"``, ...).
    per_class : int
        Samples per class (per row) in ``samples_conditional.png``.
    value_range : (float, float)
        The image values shown as black and white.

    Returns
    -------
    dict of str to Path
        Picture name (the file's stem) -> its path.

    Examples
    --------
    >>> import tempfile
    >>> g = torch.Generator().manual_seed(0)
    >>> report = ClassifierEnergyReport(
    ...     metrics={}, samples={"from_noise/conditional": torch.rand(20, 1, 28, 28, generator=g),
    ...                          "from_noise/unconditional": torch.rand(20, 1, 28, 28, generator=g)},
    ...     labels={"from_noise/conditional": torch.arange(10).repeat_interleave(2)},
    ...     trajectory=torch.rand(3, 10, 1, 28, 28, generator=g), trajectory_steps=[0, 5, 10],
    ...     trajectory_set="from_noise", energies={"test_images": torch.randn(50, generator=g)})
    >>> sorted(save_report_pictures(report, tempfile.mkdtemp()))
    ['chain_evolution', 'energy_histogram', 'samples_conditional', 'samples_unconditional']
    """
    if per_class < 1:
        raise ValueError(f"per_class must be a positive number of samples per row, got {per_class}")
    folder = Path(folder)
    written: dict[str, Path] = {}
    n_classes = None
    if report.trajectory is not None:
        n_classes = report.trajectory.shape[1]
        names = list(class_names) if class_names is not None else [str(k) for k in range(n_classes)]
        source = report.trajectory_set.removeprefix("from_").replace("_", " ") or "their starts"
        written["chain_evolution"] = save_chain_evolution(
            report.trajectory, folder / "chain_evolution.png", steps=report.trajectory_steps, row_labels=names,
            value_range=value_range, title=f"class-conditional chains from {source}, one row per class")
    conditional = {name: x for name, x in report.samples.items() if name in report.labels}
    if conditional:
        n_classes = n_classes or max(int(report.labels[name].max()) + 1 for name in conditional)
        panels = {_title(name): _rows_per_class(x, report.labels[name], n_classes, per_class, value_range[0])
                  for name, x in conditional.items()}
        written["samples_conditional"] = save_sample_comparison(
            panels, folder / "samples_conditional.png", nrow=per_class, value_range=value_range)
    unconditional = {_title(name): x[: per_class * per_class] for name, x in report.samples.items()
                     if name.endswith(("/unconditional", "/marginal"))
                     or (name == "buffer" and name not in report.labels)}
    if unconditional:
        written["samples_unconditional"] = save_sample_comparison(
            unconditional, folder / "samples_unconditional.png", nrow=per_class, value_range=value_range)
    if report.energies:
        written["energy_histogram"] = save_energy_histogram(
            {name.replace("_", " "): e for name, e in report.energies.items()}, folder / "energy_histogram.png",
            title="energy E(x) of each set")
    if report.hardest_cases:
        panels = {("test images, highest energy" if name == "test_images" else
                   f"{name.replace('_', ' ')}, lowest energy"): x for name, x in report.hardest_cases.items()}
        written["ood_hardest_cases"] = save_sample_comparison(
            panels, folder / "ood_hardest_cases.png", nrow=5, value_range=value_range)  # a near-square grid each
    return written


def _title(name: str) -> str:
    """``"from_noise/conditional"`` -> ``"from noise, conditional"``; ``"buffer"`` -> ``"replay buffer"``."""
    return "replay buffer" if name == "buffer" else name.replace("/", ", ").replace("_", " ")


def _rows_per_class(x: Tensor, labels: Tensor, n_classes: int, per_class: int, blank: float) -> Tensor:
    """The first ``per_class`` samples of each class, one class after another; missing ones filled with ``blank``."""
    rows = []
    for k in range(n_classes):
        members = x[labels == k][:per_class]
        filler = x.new_full((per_class - members.shape[0], *x.shape[1:]), blank)
        rows.append(torch.cat([members, filler]))
    return torch.cat(rows)
