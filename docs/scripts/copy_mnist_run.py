"""Copy the MNIST JEM run's pictures and metrics into the docs (docs/_static/mnist/).

    python3 examples/mnist_jem.py                                              # writes runs/mnist_jem/
    python3 docs/scripts/copy_mnist_run.py runs/mnist_jem

    # several seeds: the pictures of the first, the numbers of all (tables show "a / b / c")
    python3 docs/scripts/copy_mnist_run.py runs/seed0 runs/seed1 runs/seed2

The MNIST tutorial page shows these files; the docs build turns the metrics into tables
(docs/scripts/rst_tables.py). Files of an earlier copy that the new one does not have
(pictures of an older example, the metrics of more runs) are removed, so the page never
mixes two runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

FILES = (
    "metrics.json",
    "chain_evolution.png",
    "samples_conditional.png",
    "samples_unconditional.png",
    "energy_histogram.png",
    "ood_hardest_cases.png",
    "training_curves.png",
)
"""What the page shows of the pictured run: ``examples/mnist_jem.py``'s metrics and pictures."""

DESTINATION = Path(__file__).resolve().parent.parent / "_static" / "mnist"


def run_metrics_name(index: int) -> str:
    """Where the metrics of the ``index``-th run (1-based) of several go: ``metrics_run<index>.json``."""
    return f"metrics_run{index}.json"


def copy_runs(runs: Sequence[Path], destination: Path = DESTINATION) -> list[Path]:
    """Copy :data:`FILES` from ``runs[0]``, and for several runs every ``metrics.json`` as ``metrics_run<i>.json``.

    Checks every run first and raises ``FileNotFoundError`` naming every missing
    file, before anything is copied or removed. Then removes the files of an
    earlier copy that this one does not write (``*.png`` and ``metrics*.json``).
    """
    if not runs:
        raise ValueError("give at least one run folder")
    missing = [str(runs[0] / name) for name in FILES if not (runs[0] / name).is_file()]
    missing += [str(run / "metrics.json") for run in runs[1:] if not (run / "metrics.json").is_file()]
    if missing:
        raise FileNotFoundError(f"missing {missing}: run examples/mnist_jem.py --out <folder> first")
    destination.mkdir(parents=True, exist_ok=True)
    copied = [Path(shutil.copyfile(runs[0] / name, destination / name)) for name in FILES]
    if len(runs) > 1:
        copied += [Path(shutil.copyfile(run / "metrics.json", destination / run_metrics_name(i)))
                   for i, run in enumerate(runs, start=1)]
    written = {path.name for path in copied}
    for stale in [*destination.glob("*.png"), *destination.glob("metrics*.json")]:
        if stale.name not in written:
            stale.unlink()
    return copied


def copy_run(run: Path, destination: Path = DESTINATION) -> list[Path]:
    """Copy :data:`FILES` from one run folder to ``destination`` (:func:`copy_runs` of one run)."""
    return copy_runs([run], destination)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", default=[Path("runs/mnist_jem")], type=Path,
                        help="the example's --out folders; the first one's pictures are shown")
    args = parser.parse_args()
    try:
        copied = copy_runs(args.runs)
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")
    print("\n".join(f"copied {path}" for path in copied))
