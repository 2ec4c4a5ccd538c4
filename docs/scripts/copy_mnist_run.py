"""Copy the MNIST JEM run's pictures and metrics into the docs (docs/_static/mnist/).

    python3 examples/mnist_jem.py --data-dir ../shared/data/mnist-10k   # writes runs/mnist_jem/
    python3 docs/scripts/copy_mnist_run.py runs/mnist_jem

The MNIST tutorial page shows these files; the docs build turns metrics.json into tables.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

FILES = (
    "metrics.json",
    "samples_buffer.png",
    "samples_fresh.png",
    "samples_conditional.png",
    "chain_evolution.png",
    "training_curves.png",
)
DESTINATION = Path(__file__).resolve().parent.parent / "_static" / "mnist"


def copy_run(run: Path, destination: Path = DESTINATION) -> list[Path]:
    """Copy :data:`FILES` from ``run`` to ``destination``; raises naming every missing file first."""
    missing = [name for name in FILES if not (run / name).is_file()]
    if missing:
        raise FileNotFoundError(f"run folder {run} lacks {missing}: run examples/mnist_jem.py --out {run} first")
    destination.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(run / name, destination / name)) for name in FILES]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", default="runs/mnist_jem", type=Path, help="the example's --out folder")
    args = parser.parse_args()
    try:
        copied = copy_run(args.run)
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")
    print("\n".join(f"copied {path}" for path in copied))
