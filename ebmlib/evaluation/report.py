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

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_batch, check_choice, check_labels
from ..buffers import Initializer, ReplayBuffer, UniformInit
from ..models import ClassifierEnergy
from ..recipes import JEM
from ..recipes.jem import UNCONDITIONAL_CHAINS
from ..samplers import Sampler
from .calibration import fit_temperature
from .classification import accuracy, batched, expected_calibration_error
from .ood import OOD_SCORES, OOD_TRANSFORMS, auroc, ood_scores
from .pictures import save_chain_evolution, save_energy_histogram, save_sample_comparison
from .sample_quality import FeatureClassifier, frechet_distance

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
        Where chains start; default ``{"noise": UniformInit(event_shape, -1, 1)}``.
        The first one's conditional chains give the trajectory.
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
    check_batch(test_images, "test_images")
    check_labels(test_labels, test_images.shape[0], model.n_classes, "test_labels")
    n_classes, event_shape = model.n_classes, tuple(test_images.shape[1:])
    device, dtype = test_images.device, test_images.dtype
    if n_samples < max(n_classes, 2):
        raise ValueError(f"n_samples must be at least n_classes={n_classes} (and 2), got {n_samples}")
    check_choice(unconditional_chains, UNCONDITIONAL_CHAINS, "unconditional_chains")
    if n_steps < 1 or n_snapshots < 2:
        raise ValueError(f"n_steps must be >= 1 and n_snapshots >= 2, got n_steps={n_steps}, n_snapshots={n_snapshots}")
    if starts is None:
        starts = {"noise": UniformInit(event_shape, -1.0, 1.0).to(device=device, dtype=dtype)}
    if not starts:
        raise ValueError("starts must name at least one Initializer, got an empty mapping")
    if buffer_samples is not None:
        check_batch(buffer_samples, "buffer_samples", event_shape)
        if buffer_labels is not None:
            check_labels(buffer_labels, buffer_samples.shape[0], n_classes, "buffer_labels")
    transforms = OOD_TRANSFORMS if ood_transforms is None else ood_transforms
    ood_images = test_images if max_ood_images is None else test_images[:max_ood_images]
    intended = torch.arange(n_classes, device=device).repeat_interleave(n_samples // n_classes)
    first_of_class = torch.arange(n_classes, device=device) * (n_samples // n_classes)
    record_every = math.ceil(n_steps / (n_snapshots - 1))
    n_unconditional = n_samples * (1 if unconditional_chains == "marginal" else 2)
    work = len(starts) * n_steps * (len(intended) + n_unconditional) + (1 + len(transforms)) * len(ood_images)
    early_steps = sorted({s for s in recognition_steps if 0 < s < n_steps})
    bar = tqdm(total=work, disable=not progress, desc="evaluation", unit="step", unit_scale=True, dynamic_ncols=True)
    modes = model.training, judge.training
    model.eval()
    judge.eval()
    try:
        metrics: dict[str, Tensor | float] = {}
        energies: dict[str, Tensor] = {}
        hardest_cases: dict[str, Tensor] = {}

        def energy(x: Tensor) -> Tensor:
            return batched(model.energy, x, batch_size)

        def run(
            x: Tensor, y: Tensor | None, keep: Tensor | None = None
        ) -> tuple[Tensor, list[Tensor], dict[int, Tensor]]:
            """Chains from x for n_steps, in pieces short enough for the bar to move every few seconds;
            with keep, the chains keep seen every record_every steps (the start first); and every chain
            at each of the early steps."""
            kept = [x[keep]] if keep is not None else []
            early: dict[int, Tensor] = {}
            piece = max(1, min(record_every, _CHAIN_STEPS_PER_UPDATE // x.shape[0]))
            done = 0
            while done < n_steps:
                steps = min(piece, n_steps - done, record_every - done % record_every,
                            *(s - done for s in early_steps if s > done))
                x = sampler.sample(model, x, n_steps=steps, y=y, generator=generator)
                done += steps
                bar.update(x.shape[0] * steps)
                if keep is not None and (done % record_every == 0 or done == n_steps):
                    kept.append(x[keep])
                if done in early_steps:
                    early[done] = x
            return x, kept, early

        bar.set_description("evaluation: classifying the test images")
        logits = batched(model.logits, test_images, batch_size)
        metrics["test_accuracy"] = accuracy(logits, test_labels)
        metrics["test_expected_calibration_error"] = expected_calibration_error(logits.softmax(dim=1), test_labels)
        if calibration_set is not None:
            temperature = fit_temperature(batched(model.logits, calibration_set[0], batch_size), calibration_set[1])
            metrics["calibrated/temperature"] = temperature
            metrics["calibrated/test_expected_calibration_error"] = expected_calibration_error(
                (logits / temperature).softmax(dim=1), test_labels)
        metrics["judge_test_accuracy"] = accuracy(batched(judge, test_images, batch_size), test_labels)
        test_features = batched(judge.features, test_images, batch_size)
        energies["test_images"] = -logits.logsumexp(dim=1)

        bar.set_description("evaluation: OOD scores of the test images")
        inside = ood_scores(model, ood_images, batch_size)
        bar.update(len(ood_images))
        n_hardest = min(HARDEST_CASES, len(ood_images))
        hardest_cases["test_images"] = ood_images[inside["energy"].argsort()[:n_hardest]]  # -E: highest E first
        for name, transform in transforms.items():
            bar.set_description(f"evaluation: OOD scores of {name}")
            outside_images = transform(ood_images, generator)
            outside = ood_scores(model, outside_images, batch_size)
            bar.update(len(ood_images))
            metrics.update({f"ood_auroc/{name}/{score}": auroc(inside[score], outside[score]) for score in OOD_SCORES})
            energies[name] = -outside["energy"]
            hardest_cases[name] = outside_images[outside["energy"].argsort(descending=True)[:n_hardest]]

        noise = torch.rand((n_samples, *event_shape), generator=generator, device=device, dtype=dtype) * 2 - 1
        noise_fd = frechet_distance(test_features, batched(judge.features, noise, batch_size))
        metrics["uniform_noise/frechet_distance"] = noise_fd

        def judge_samples(prefix: str, x: Tensor) -> Tensor:
            """Frechet distance, its ratio to noise's, and class shares of unconditional samples; returns the
            judge's predicted classes."""
            predicted = batched(judge, x, batch_size).argmax(dim=1)
            fd = frechet_distance(test_features, batched(judge.features, x, batch_size))
            metrics[f"{prefix}/frechet_distance"] = fd
            metrics[f"{prefix}/frechet_distance_ratio"] = fd / noise_fd
            share = torch.bincount(predicted, minlength=n_classes)[:n_classes].to(dtype) / len(x)
            metrics.update({f"{prefix}/class_share/{k}": share[k] for k in range(n_classes)})
            metrics[f"{prefix}/class_share_min"] = share.min()
            energies[prefix] = energy(x)
            return predicted

        samples: dict[str, Tensor] = {}
        labels: dict[str, Tensor] = {}
        trajectory: Tensor | None = None
        for name, initializer in starts.items():
            prefix = f"from_{name}"
            bar.set_description(f"evaluation: class-conditional chains {prefix}")
            keep = first_of_class if trajectory is None else None
            conditional, kept, early = run(initializer(len(intended), intended, generator).to(dtype), intended, keep)
            if trajectory is None:
                trajectory = torch.stack(kept)
            samples[f"{prefix}/conditional"] = conditional
            labels[f"{prefix}/conditional"] = intended
            for step, chains in [*early.items(), (None, conditional)]:
                recognised = batched(judge, chains, batch_size).argmax(dim=1) == intended
                suffix = "" if step is None else f"_at_{step}_steps"
                metrics[f"{prefix}/conditional_recognition{suffix}"] = recognised.to(dtype).mean()
            metrics[f"{prefix}/conditional_frechet_distance"] = frechet_distance(
                test_features, batched(judge.features, conditional, batch_size))

            bar.set_description(f"evaluation: unconditional chains {prefix}")
            classes = (torch.randint(n_classes, (n_samples,), generator=generator, device=device)
                       if unconditional_chains == "mixture" else None)
            start = initializer(n_samples, classes, generator).to(dtype)
            samples[f"{prefix}/unconditional"] = run(start, classes)[0]
            judge_samples(prefix, samples[f"{prefix}/unconditional"])
            if unconditional_chains == "marginal":  # the same chains: they ran on E(x)
                metrics.update({f"{prefix}/marginal/{k.removeprefix(prefix + '/')}": v for k, v in list(metrics.items())
                                if k.startswith((f"{prefix}/frechet", f"{prefix}/class_share"))})
            else:
                bar.set_description(f"evaluation: chains on E(x) {prefix}")
                samples[f"{prefix}/marginal"] = run(initializer(n_samples, None, generator).to(dtype), None)[0]
                judge_samples(f"{prefix}/marginal", samples[f"{prefix}/marginal"])

        if buffer_samples is not None:
            bar.set_description("evaluation: the replay buffer's chains")
            chosen = torch.randperm(buffer_samples.shape[0], generator=generator, device=device)[:n_samples]
            samples["buffer"] = buffer_samples
            judge_samples("buffer", buffer_samples[chosen])
            if buffer_labels is not None:
                labels["buffer"] = buffer_labels
                recognised = batched(judge, buffer_samples, batch_size).argmax(dim=1) == buffer_labels
                metrics["buffer/conditional_recognition"] = recognised.to(dtype).mean()

        energies.setdefault("uniform_noise", energy(noise))
        for name, values in energies.items():
            metrics[f"{name}/mean_energy"] = values.mean()
        metrics["max_abs_energy"] = torch.stack([values.abs().max() for values in energies.values()]).max()
        bar.set_description("evaluation: done")
    finally:
        bar.close()
        model.train(modes[0])
        judge.train(modes[1])
    metrics["evaluation_seconds"] = time.perf_counter() - started
    assert trajectory is not None
    return ClassifierEnergyReport(
        metrics={name: float(value) for name, value in metrics.items()},
        samples=samples,
        labels=labels,
        trajectory=trajectory,
        trajectory_steps=[min(r * record_every, n_steps) for r in range(trajectory.shape[0])],
        trajectory_set=f"from_{next(iter(starts))}",
        energies=energies,
        hardest_cases=hardest_cases,
    )


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
    calibration_set, n_samples, n_steps, n_snapshots, max_ood_images, generator, progress, batch_size
        As in :func:`evaluate_classifier_energy`.

    Returns
    -------
    ClassifierEnergyReport

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
    event_shape = tuple(test_images.shape[1:])
    starts: dict[str, Initializer] = {
        "noise": UniformInit(event_shape, -1.0, 1.0).to(device=test_images.device, dtype=test_images.dtype)
    }
    if include_initializer:
        starts["initializer"] = buffer.initializer
    starts.update(extra_starts or {})
    return evaluate_classifier_energy(
        recipe.model, recipe.sampler, test_images, test_labels, judge, starts=starts,
        buffer_samples=buffer.samples, buffer_labels=_slot_classes(buffer), calibration_set=calibration_set,
        unconditional_chains=recipe.unconditional_chains, n_samples=n_samples, n_steps=n_steps,
        n_snapshots=n_snapshots, max_ood_images=max_ood_images, generator=generator, progress=progress,
        batch_size=batch_size,
    )


def _slot_classes(buffer: ReplayBuffer) -> Tensor | None:
    """The class of each of the buffer's chains (its slot's block), ``None`` for a buffer without classes."""
    if buffer.n_classes is None:
        return None
    slots = torch.arange(buffer.capacity, device=buffer.samples.device)
    return (slots // buffer.slots_per_class).clamp(max=buffer.n_classes - 1)


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
