"""Evaluation: classification, calibration, out-of-distribution detection and sample quality.

One module per concern: :mod:`~ebmlib.evaluation.classification` (accuracy,
expected calibration error), :mod:`~ebmlib.evaluation.ood` (JEM's OOD scores and
AUROC), :mod:`~ebmlib.evaluation.sample_quality` (Frechet distance in the features
of an independent classifier, class recognition), :mod:`~ebmlib.evaluation.mmd`,
:mod:`~ebmlib.evaluation.grid_kl` (KL divergence of smoothed grid histograms, for 2D samples),
:mod:`~ebmlib.evaluation.trajectories` (chains seen every few steps) and
:mod:`~ebmlib.evaluation.pictures` (image grids, chains from noise, energy histograms, training curves),
:mod:`~ebmlib.evaluation.landscapes` (2D energy landscapes with samples, chain traces);
:mod:`~ebmlib.evaluation.report` runs them all on a classifier energy (JEM).
For samplers and energies: :mod:`~ebmlib.evaluation.mcmc_diagnostics` (per-chain ESS,
split-R-hat), :mod:`~ebmlib.evaluation.stein` (kernel Stein discrepancy),
:mod:`~ebmlib.evaluation.ais` (log Z by annealed importance sampling) and
:mod:`~ebmlib.evaluation.calibration` (temperature scaling).
"""

from .ais import AISResult, AnnealedEnergy, annealed_importance_sampling
from .calibration import TemperatureScaled, fit_temperature
from .classification import accuracy, batched, expected_calibration_error
from .grid_kl import grid_kl
from .landscapes import energy_grid, plot_chain_traces, plot_energy_landscape, save_chain_traces, save_energy_landscape
from .mcmc_diagnostics import effective_sample_size, split_r_hat
from .mmd import mmd
from .ood import OOD_SCORES, OOD_TRANSFORMS, auroc, flipped, inverted, ood_auroc, ood_scores, uniform_noise
from .pictures import (
    image_grid,
    save_chain_evolution,
    save_energy_histogram,
    save_image_grid,
    save_sample_comparison,
    save_training_curves,
    training_curve_panels,
)
from .report import (
    ClassifierEnergyReport,
    SampleJudge,
    classification_metrics,
    evaluate_classifier_energy,
    evaluate_jem,
    ood_metrics,
    save_report_pictures,
)
from .sample_quality import (
    FeatureClassifier,
    feature_frechet_distance,
    frechet_distance,
    recognition_rate,
    train_feature_classifier,
)
from .stein import kernel_stein_discrepancy
from .trajectories import chain_trajectory

__all__ = [
    "mmd",
    "grid_kl",
    "effective_sample_size", "split_r_hat", "kernel_stein_discrepancy", "fit_temperature", "TemperatureScaled",
    "annealed_importance_sampling", "AISResult", "AnnealedEnergy",
    "accuracy", "expected_calibration_error", "batched",
    "auroc", "ood_scores", "ood_auroc", "OOD_SCORES", "OOD_TRANSFORMS", "uniform_noise", "flipped", "inverted",
    "frechet_distance", "feature_frechet_distance", "FeatureClassifier", "train_feature_classifier",
    "recognition_rate",
    "chain_trajectory",
    "energy_grid", "plot_energy_landscape", "save_energy_landscape", "plot_chain_traces", "save_chain_traces",
    "image_grid", "save_image_grid", "save_chain_evolution", "save_sample_comparison", "save_energy_histogram",
    "save_training_curves", "training_curve_panels",
    "evaluate_classifier_energy", "evaluate_jem", "ClassifierEnergyReport", "save_report_pictures",
    "classification_metrics", "ood_metrics", "SampleJudge",
]
