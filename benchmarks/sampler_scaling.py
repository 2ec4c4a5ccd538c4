"""How sampling cost grows with the batch size and the image size: samples per second and peak memory.

Two energy networks, each read as a ``ClassifierEnergy`` with 10 classes:

- ``28x28x1``: the MNIST swish CNN ``SwishCNN(channels=1, width=32)`` (the example's at twice its default width);
- ``32x32x3``: a wider ``SwishCNN(channels=3, width=64)`` on CIFAR-sized images.

For every batch size (64 to 1024 by default) and both networks, the script times ``--steps``
SGLD steps (step 1.0, noise 0.01, clamp [-1, 1]) of two paths, interleaved over rounds (each
round visits every case once, in a rotated order, after an uncounted warm-up visit):

- ``Langevin fp32``: ``Langevin(...)`` on the model as built, the default path;
- ``Langevin bf16, channels_last``: ``Langevin(..., precision="bf16")`` on the model in
  channels-last layout, the fastest CPU path of ``sampler_throughput.py``.

It reports chain-steps per second (chains x steps / median wall time), the median milliseconds
per step, the ratio of the fast path's CPU time to the default's (steady under other load when
torch runs one thread) and the peak tensor memory of one step above the starting level.

Usage::

    python3 benchmarks/sampler_scaling.py --threads 1     # about 5 minutes on one core; results/cpu_scaling.{json,md}
    python3 benchmarks/sampler_scaling.py --threads 1 --batch-sizes 64 128 --rounds 1   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from sampler_throughput import (
    CLAMP,
    NOISE_STD,
    STEP_SIZE,
    allocator_settings,
    channels_last,
    fmt_load,
    machine,
    peak_memory_mib,
    timed,
)
from torch import Tensor

from ebmlib.models import ClassifierEnergy, SwishCNN
from ebmlib.samplers import Langevin

RESULTS = Path(__file__).parent / "results"
IMAGES = {"28x28x1": (1, 28, 28, 32), "32x32x3": (3, 32, 32, 64)}  # channels, height, width, network width
"""Image shape and the width of the ``SwishCNN`` that reads it."""
PATHS = {"Langevin fp32": ("full", False), "Langevin bf16, channels_last": ("bf16", True)}
"""Each sampling path: ``precision`` and whether the model is in channels-last layout."""


@dataclass
class Row:
    image: str
    batch_size: int
    path: str
    n_steps: int
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    first_call_s: float = 0.0
    peak_mib: float | None = None
    ms_per_step: float = 0.0
    samples_per_s: float = 0.0
    samples_per_cpu_s: float = 0.0
    cpu_ratio_to_fp32: float = 0.0


def build_model(image: str) -> ClassifierEnergy:
    channels, _, _, width = IMAGES[image]
    torch.manual_seed(0)
    return ClassifierEnergy(SwishCNN(channels=channels, width=width, n_outputs=10), n_classes=10)


def case(image: str, batch_size: int, path: str, n_steps: int) -> Callable[[], Tensor]:
    """One run of ``n_steps`` steps of ``path`` on a batch of ``image``-shaped chains."""
    channels, height, width, _ = IMAGES[image]
    precision, layout = PATHS[path]
    model = build_model(image)
    model = channels_last(model) if layout else model
    sampler = Langevin(STEP_SIZE, NOISE_STD, n_steps=n_steps, clamp=CLAMP, precision=precision)
    x0 = torch.rand(batch_size, channels, height, width, generator=torch.Generator().manual_seed(1)) * 2 - 1
    generator = torch.Generator()
    return lambda: sampler.sample(model, x0, generator=generator.manual_seed(0))


def run(args: argparse.Namespace) -> list[Row]:
    cases = [(Row(image, batch, path, args.steps), case(image, batch, path, args.steps))
             for image in args.images for batch in args.batch_sizes for path in PATHS]
    for row, call in cases:
        row.first_call_s = timed(call, torch.device("cpu"))[0]
        print(f"  warm-up {row.image} B={row.batch_size:<5d} {row.path:30s} {row.first_call_s:7.2f} s",
              file=sys.stderr, flush=True)
    for r in range(args.rounds):
        shift = r % len(cases)
        for row, call in cases[shift:] + cases[:shift]:
            wall, cpu, _ = timed(call, torch.device("cpu"))
            row.seconds.append(wall)
            row.cpu_seconds.append(cpu)
        print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    for row, _ in cases:  # memory does not grow with the number of steps: one step
        one_step = case(row.image, row.batch_size, row.path, 1)
        row.peak_mib = peak_memory_mib(one_step, torch.device("cpu"))
    rows = [row for row, _ in cases]
    default = {(r.image, r.batch_size): r for r in rows if r.path == "Langevin fp32"}
    for row in rows:
        median = statistics.median(row.seconds)
        row.ms_per_step = 1e3 * median / row.n_steps
        row.samples_per_s = row.batch_size * row.n_steps / median
        row.samples_per_cpu_s = row.batch_size * row.n_steps / statistics.median(row.cpu_seconds)
        base = default[row.image, row.batch_size]
        row.cpu_ratio_to_fp32 = statistics.median(row.cpu_seconds) / statistics.median(base.cpu_seconds)
    return rows


def markdown(report: dict, rows: list[Row]) -> str:
    m = report["machine"]
    lines = [
        f"# Sampling cost against batch size and image size on {m['cpu']}",
        "",
        f"- command: `{report['command']}`",
        f"- CPU: {m['cpu']} ({m['logical_cpus']} logical CPUs, {m['torch_threads']} torch threads, flags "
        f"{' '.join(m['cpu_bf16_flags']) or 'none'}); torch {m['torch']}, Python {m['python']}",
        f"- load average (1/5/15 min) at start {fmt_load(m['load_average_start'])}, at end "
        f"{fmt_load(m['load_average_end'])}; {report['rounds']} interleaved rounds of {report['steps']} SGLD steps, "
        f"medians; total {report['total_s'] / 60:.1f} min",
        f"- C allocator settings: {allocator_settings(m)}",
        "- networks: SwishCNN(channels=1, width=32) on 28x28x1 and SwishCNN(channels=3, width=64) on 32x32x3, "
        "as ClassifierEnergy; SGLD step 1.0, noise 0.01, clamp [-1, 1]",
        "",
        "*Samples/s*: chain-steps per second of wall time (chains x steps / median time); *per CPU-s*: the same per "
        "second of the process's CPU time (with one torch thread, what the machine's other load does not change); "
        "*CPU ratio to fp32*: the "
        "path's median CPU time over the fp32 path's at the same image and batch size (steady under other load "
        "with one torch thread); *peak MiB*: tensor memory allocated above the starting level during one step; "
        "*MiB per chain*: peak MiB / batch.",
        "",
        "| image | batch | path | samples/s | per CPU-s | ms per step | CPU ratio to fp32 | peak MiB | MiB per chain |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        peak = "n/a" if r.peak_mib is None else f"{r.peak_mib:.0f}"
        per_chain = "n/a" if r.peak_mib is None else f"{r.peak_mib / r.batch_size:.2f}"
        lines.append(f"| {r.image} | {r.batch_size} | {r.path} | {r.samples_per_s:,.0f} | {r.samples_per_cpu_s:,.0f} | "
                     f"{r.ms_per_step:.1f} | "
                     f"{r.cpu_ratio_to_fp32:.3f} | {peak} | {per_chain} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    p.add_argument("--images", nargs="+", default=list(IMAGES), choices=list(IMAGES))
    p.add_argument("--steps", type=int, default=2, help="SGLD steps per timed run")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds (after one warm-up visit)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--out", default=None, help="output stem (default: benchmarks/results/cpu_scaling)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    report: dict = {"command": " ".join(["python3", "benchmarks/sampler_scaling.py", *sys.argv[1:]]),
                    "machine": machine(torch.device("cpu")), "rounds": args.rounds, "steps": args.steps}
    rows = run(args)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["total_s"] = time.perf_counter() - start
    report["rows"] = [asdict(r) for r in rows]
    text = markdown(report, rows)
    print(text)
    stem = Path(args.out) if args.out else RESULTS / "cpu_scaling"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(text + "\n")
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
