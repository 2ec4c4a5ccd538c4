"""Train JEM on MNIST (or Fashion-MNIST, KMNIST, CIFAR-10), measure it and draw images from noise: the reference run.

Logits ``f(x)`` give ``p(y|x) = softmax f(x)``, ``E(x) = -logsumexp f(x)``, ``E(x, y) = -f(x)[y]``; the loss is
cross-entropy + contrastive divergence + energy L2, on SGLD chains from uniform noise kept in a replay buffer.

    python3 examples/mnist_jem.py                            # MNIST-10k, shipped: <= 10 minutes on 2 CPU cores
    python3 examples/mnist_jem.py --dataset fashion-mnist    # Fashion-MNIST-10k, shipped too
    python3 examples/mnist_jem.py --data-dir data            # full MNIST: read from, or downloaded to, ./data
    python3 examples/mnist_jem.py --quick                    # < 1 minute smoke run
    torchrun --standalone --nproc_per_node 2 examples/mnist_jem.py

Outputs in ``--out`` (default ``runs/<dataset>_jem``): metrics.json, chain_evolution.png (chains from noise, a row a
class), samples_*.png, energy_histogram.png, ood_hardest_cases.png, training_curves.png, history.csv, checkpoints/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# Idle OpenMP threads that spin slow every op whenever another process shares the cores (before torch is imported)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch.utils.data import TensorDataset

from ebmlib import data as datasets
from ebmlib import evaluation
from ebmlib.buffers import ClassGaussianInit, ReplayBuffer, UniformInit
from ebmlib.checkpoint import CheckpointError
from ebmlib.models import ClassifierEnergy, SwishCNN, WideResNet
from ebmlib.recipes import JEM, jem_loss
from ebmlib.recipes.jem import GENERATIVE_TERMS, UNCONDITIONAL_CHAINS
from ebmlib.samplers import Langevin
from ebmlib.training import CosineDecay, CSVLogger, TermWarmUp, Trainer, resolve_device, resolve_precision
from ebmlib.training.distributed import distributed, main_process_first, sharded_loader

QUICK = {"train_size": 500, "test_size": 200, "steps": 12, "batch_size": 32, "n_negatives": 16, "width": 8,  # smoke
         "sgld_steps": 5, "buffer_size": 200, "eval_steps": 10, "n_eval_samples": 100, "classifier_epochs": 1,
         "calibration_size": 20, "warm_up": (2, 6)}  # a tiny subset and few, cheap steps: well under a minute


def number(kind: type, low: float = 0, high: float = float("inf"), low_allowed: bool = False) -> Any:
    def number(text: str) -> Any:  # an argparse type: a number in (low, high], or [low, high]
        if not ((value := kind(text)) > low or (low_allowed and value == low)) or value > high:
            raise argparse.ArgumentTypeError(f"must lie in {'[' if low_allowed else '('}{low:g}, {high:g}], got {text}")
        return value
    return number


OPTIONS: list[tuple[str, Any, Any, str]] = [  # flag, type (bool: a switch; a tuple: the choices), default, help
    ("--dataset", tuple(sorted(datasets.DATASET_NAMES)), "mnist", "the dataset"),
    ("--data-dir", str, None, "read from (or download to) here (default: the subsets shipped with ebmlib, or ./data)"),
    ("--model", ("cnn", "wrn-16-2", "wrn-28-10"), "cnn", "the network: the swish CNN or a Wide ResNet DEPTH-WIDTH"),
    ("--out", str, None, "output folder (default runs/<dataset>_jem)"),
    ("--steps", number(int), 3000, "total training steps"),
    ("--max-minutes", float, 7.0, "training-time budget: stops early when spent (0 = none, for exact repeats)"),
    ("--batch-size", number(int), 128, "data images per step"),
    ("--n-negatives", number(int), 64, "SGLD chains per step (the chains are most of a step's cost)"),
    ("--device", str, "auto", "auto | cpu | cuda"),
    ("--seed", int, 0, "seed of the weights, the chains and the data order"),
    ("--width", number(int), 24, "channels of the swish CNN's first layer"),
    ("--lr", number(float), 1e-3, "Adam learning rate"),
    ("--step-size", number(float), 1.0, "SGLD step size (gradient scale)"),
    ("--noise-std", number(float), 0.01, "SGLD noise standard deviation"),
    ("--sgld-steps", number(int), 20, "SGLD steps per training iteration"),
    ("--buffer-size", number(int), 1000, "replay-buffer chains (split over classes)"),
    ("--reinit-prob", number(float, 0, 1, True), 0.02, "chance to restart a chain at each visit"),
    ("--regularization", float, 0.03, "weight of the energy L2 penalty on the samples'"),
    ("--positive-regularization", float, 0.3, "weight of the energy L2 penalty on the data's energies"),
    ("--classification-weight", float, 16.0, "weight of the cross-entropy term"),
    ("--p-x-weight", float, 1.0, "weight of the unconditional log p(x) term"),
    ("--p-x-given-y-weight", float, 0.0, "weight of the class-conditional term"),
    ("--input-noise", float, 0.03, "std of the Gaussian noise added to data"),
    ("--eval-steps", number(int), 256, "SGLD steps of the evaluation's chains"),
    ("--n-eval-samples", number(int, 100, low_allowed=True), 300, "chains per start in the evaluation"),
    ("--calibration-size", number(int, 0, low_allowed=True), 500, "training images held out to fit the temperature"),
    ("--classifier-epochs", number(int), 3, "epochs of the independent judge"),
    ("--train-size", number(int), None, "use only the first N training images"),
    ("--test-size", number(int), None, "use only the first N test images"),
    ("--threads", number(int), None, "CPU threads for torch"),
    ("--lr-decay", ("cosine", "none"), "cosine", "lr decay over the step or time budget"),
    ("--precision", ("auto", "full", "bf16"), "auto", "SGLD gradient precision (auto: bf16 where it is native)"),
    ("--chain-start", ("noise", "class-gaussian"), "noise", "chains (re)start from U(-1, 1) or class Gaussians"),
    ("--unconditional-chains", UNCONDITIONAL_CHAINS, "mixture", "p(x)'s chains: class-conditional ones, or on E(x)"),
    ("--resume", bool, False, "continue from the latest checkpoint in OUT/checkpoints"),
    ("--quick", bool, False, "tiny subset and few steps (a smoke run)"),
    ("--no-progress", bool, False, "hide the progress bars"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for flag, kind, default, help_text in OPTIONS:
        how = {"action": "store_true"} if kind is bool else {"choices": kind} if type(kind) is tuple else {"type": kind}
        p.add_argument(flag, default=default, help=help_text, **how)
    p.add_argument("--warm-up", type=int, nargs=2, default=(200, 600), metavar=("START", "END"),
                   help="the generative terms' weights are 0 until step START, then ramp linearly to full at END")
    args = p.parse_args(argv)
    for name, value in QUICK.items() if args.quick else ():
        if getattr(args, name) == p.get_default(name):
            setattr(args, name, value)
    if not 0 <= args.warm_up[0] <= args.warm_up[1]:
        p.error(f"--warm-up needs 0 <= START <= END, got {args.warm_up[0]} {args.warm_up[1]}")
    if args.positive_regularization > 0 and not args.regularization > 0:
        p.error(f"--positive-regularization {args.positive_regularization} needs --regularization > 0, got "
                f"{args.regularization} (to switch the energy penalty off, pass --positive-regularization 0 too)")
    args.out = args.out or f"runs/{args.dataset.replace('-', '_')}_jem"
    return args


def build_recipe(args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor, rank: int = 0) -> JEM:
    n_classes = len(datasets.class_names(args.dataset))
    depth_width = [int(n) for n in args.model.split("-")[1:]]  # a Wide ResNet's, or none for the CNN
    network = (WideResNet(*depth_width, channels=images.shape[1], n_outputs=n_classes) if depth_width
               else SwishCNN(images.shape[1], args.width, n_classes))
    model = ClassifierEnergy(network, n_classes).to(memory_format=torch.channels_last)  # the fastest layout
    sampler = Langevin(args.step_size, args.noise_std, n_steps=args.sgld_steps, clamp=(-1.0, 1.0),
                       precision=resolve_precision(args.precision, resolve_device(args.device)))
    start = (UniformInit(tuple(images.shape[1:]), -1.0, 1.0) if args.chain_start == "noise"
             else ClassGaussianInit(images, labels, n_classes=n_classes))
    class_chains = args.p_x_given_y_weight > 0 or args.unconditional_chains == "mixture"
    buffer = ReplayBuffer(args.buffer_size, start, args.reinit_prob, n_classes=n_classes if class_chains else None,
                          generator=torch.Generator().manual_seed(args.seed + rank))  # each process its own chains
    loss = jem_loss(classification_weight=args.classification_weight, p_x_weight=args.p_x_weight,
                    p_x_given_y_weight=args.p_x_given_y_weight, regularization_weight=args.regularization,
                    positive_regularization_weight=args.positive_regularization)
    return JEM(model, sampler, buffer, torch.optim.Adam(model.parameters(), lr=args.lr), loss,
               input_noise_std=args.input_noise, unconditional_chains=args.unconditional_chains,
               n_negatives=args.n_negatives)


def write_outputs(args: argparse.Namespace, trainer: Trainer, splits: datasets.DataSplits, started: float) -> None:
    out, device, bars = Path(args.out), trainer.device, not args.no_progress
    train_x, train_y, test_x, test_y, calibration_x, calibration_y = (t.to(device) for t in splits)
    judge = evaluation.train_feature_classifier(train_x, train_y, epochs=args.classifier_epochs, progress=bars,
        generator=torch.Generator(device).manual_seed(args.seed), cache_path=out / "feature_classifier.pt")
    report = evaluation.evaluate_jem(
        trainer.recipe, test_x, test_y, judge, n_samples=args.n_eval_samples, n_steps=args.eval_steps,
        include_initializer=args.chain_start != "noise", progress=bars,
        extra_starts={"class_gaussians": ClassGaussianInit(train_x, train_y, trainer.recipe.model.n_classes)},
        calibration_set=(calibration_x, calibration_y) if len(calibration_x) else None,
        generator=torch.Generator(device).manual_seed(args.seed + 1))
    evaluation.save_report_pictures(report, out, class_names=datasets.class_names(args.dataset))
    evaluation.save_training_curves(trainer.history, out / "training_curves.png")
    data = {"dataset": args.dataset, "train_images": len(train_x), "test_images": len(test_x),
            "calibration_images": len(calibration_x), "data_dir": args.data_dir or "the subset shipped with ebmlib"}
    metrics: dict[str, Any] = {**report.metrics, **trainer.summary(), "settings": vars(args), "data": data,
                               "wall_seconds": time.perf_counter() - started}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps({k: v for k, v in metrics.items() if k != "settings"}, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, trainer = time.perf_counter(), None
    torch.set_num_threads(args.threads or torch.get_num_threads())
    try:
        with distributed(resolve_device(args.device)) as process:  # under torchrun: one process of several
            with main_process_first() as first:  # one process downloads, the others then read its files
                root = args.data_dir or datasets.default_root(args.dataset)
                splits = datasets.load_splits(args.dataset, root, train_size=args.train_size, test_size=args.test_size,
                                              holdout=args.calibration_size, download=first.rank == 0)
            torch.manual_seed(args.seed)
            recipe = build_recipe(args, splits.train_images, splits.train_labels, process.rank)
            test_x, test_y = (t[:1000].to(resolve_device(args.device)) for t in splits[2:4])  # accuracy every epoch
            trainer = Trainer(recipe, device=args.device, seed=args.seed, checkpoint_dir=Path(args.out) / "checkpoints",
                              callbacks=[CSVLogger(args.out), TermWarmUp(recipe.loss, GENERATIVE_TERMS, *args.warm_up)],
                              lr_schedule=CosineDecay() if args.lr_decay == "cosine" else None,  # over the budget
                              evaluate=lambda recipe: {"test_accuracy": float(evaluation.accuracy(
                                  evaluation.batched(recipe.model.logits, test_x), test_y))},
                              progress=not args.no_progress, settings=vars(args))
            if args.resume:
                print(f"resumed from {trainer.resume(Path(args.out) / 'checkpoints')} at step {trainer.step}")
            loader = sharded_loader(TensorDataset(*splits[:2]), args.batch_size, seed=args.seed)
            trainer.fit(loader, max_steps=args.steps, max_seconds=max(args.max_minutes, 0) * 60 or None)
    except (datasets.DatasetNotFoundError, datasets.SplitError, CheckpointError) as error:
        hint = ("without --data-dir, mnist and fashion-mnist read the subsets shipped with ebmlib"
                if isinstance(error, datasets.DatasetNotFoundError) else "--calibration-size sets the hold-out"
                if isinstance(error, datasets.SplitError) else "" if args.resume else "add --resume to continue that "
                "run, or pass another --out")
        print(f"error: {error}" + (f"\n({hint})" if hint else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f" at step {trainer.step}" if trainer is not None else ""
        print(f"\ninterrupted{where}; continue with the same command plus --resume", file=sys.stderr)
        return 130
    if process.rank == 0:  # process 0 evaluates and writes the outputs alone
        write_outputs(args, trainer, splits, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
