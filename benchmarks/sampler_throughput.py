"""Sampler throughput: ebmlib's samplers and fast paths against a bare PyTorch SGLD loop.

The network is the MNIST swish CNN (``SwishCNN(width=32)`` read as a ``ClassifierEnergy``, the example's at twice its
default width; 28x28 inputs); with ``--image 32x32x3``, a small Wide ResNet on CIFAR-sized inputs
(``WideResNet(depth=16, width=2)``, JEM's WRN-28-10 shape at 2% of its parameters). In one run the script
times, interleaved (each round visits every variant once, in a rotated order) and reports medians over rounds:

- ``bare``: a hand-written SGLD loop (``requires_grad_``, ``torch.autograd.grad``,
  update, ``detach``), the baseline; ``bare bf16``: the same loop under bf16 autocast;
- ebmlib's ``Langevin`` in each mode: fp32 eager (the default), ``precision="bf16"``,
  ``compile_gradient=True`` (with and without bf16) and, on CUDA, ``cuda_graph=True``;
- the same on a copy of the model in channels-last layout
  (``model.to(memory_format=torch.channels_last)``), fp32 and bf16: on CPU the fastest path;
- ``MALA`` and ``HMC`` (5 leapfrog steps) with the same number of gradient evaluations.

and, separately, one ``JEM.training_step`` against a hand-written JEM iteration (the
bare cost of its sampling plus one forward/backward and optimizer step of the batch).

Each visit is timed twice: wall-clock time, and the process's CPU time. With ``--threads 1``
on a machine shared with other jobs, CPU time is the steadier measure (a descheduled
process accrues no CPU time); the report gives ratios to the bare loop for both.

Usage::

    python3 benchmarks/sampler_throughput.py                     # full CPU run, writes results/cpu.{json,md}
    python3 benchmarks/sampler_throughput.py --quick             # batch 128, 20 steps, 3 rounds: about a minute
    python3 benchmarks/sampler_throughput.py --device cuda       # on a GPU, writes results/cuda.{json,md}
    python3 benchmarks/sampler_throughput.py --image 32x32x3 --quick  # the Wide ResNet, writes results/cpu_32x32x3.*
    python3 benchmarks/sampler_throughput.py --threads 1 --batch-sizes 128 --steps 20 --rounds 7 --skip-jem \\
        --out benchmarks/results/cpu_fastest   # the CPU fast-path comparison of benchmarks/README.md
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.models import ClassifierEnergy, SwishCNN, WideResNet
from ebmlib.recipes import JEM, jem_loss
from ebmlib.samplers import HMC, MALA, Langevin, Sampler

STEP_SIZE, NOISE_STD, CLAMP = 1.0, 0.01, (-1.0, 1.0)  # the MNIST example's SGLD
N_LEAPFROG = 5
RESULTS = Path(__file__).parent / "results"
IMAGES: dict[str, tuple[tuple[int, int, int], Callable[[], nn.Module], str]] = {
    "28x28x1": ((1, 28, 28), lambda: SwishCNN(channels=1, width=32, n_outputs=10), "SwishCNN(width=32)"),
    "32x32x3": ((3, 32, 32), lambda: WideResNet(depth=16, width=2, channels=3, n_outputs=10),
                "WideResNet(depth=16, width=2) (leaky ReLU, no norm)"),
}
"""``--image`` -> the event shape, the network and its description in the report."""

Run = Callable[[Tensor, torch.Generator], Tensor]


# ---------------------------------------------------------------------------------------------
# The baseline: what a user writes by hand.


def bare_sgld(network: nn.Module, x: Tensor, n_steps: int, generator: torch.Generator,
              y: Tensor | None = None, bf16: bool = False) -> Tensor:
    """SGLD written out: E(x) = -logsumexp f(x) (or -f(x)[y]), x <- clamp(x - eta dE/dx + sigma xi)."""
    for _ in range(n_steps):
        x = x.detach().requires_grad_(True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = network(x)
        logits = logits.float()
        energy = -logits.logsumexp(1) if y is None else -logits.gather(1, y[:, None])[:, 0]
        (grad,) = torch.autograd.grad(energy.sum(), x)
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        x = (x - STEP_SIZE * grad + NOISE_STD * noise).clamp(*CLAMP)
    return x.detach()


# ---------------------------------------------------------------------------------------------
# Variants


@dataclass
class Variant:
    name: str
    make: Callable[[int], Run]  # n_steps (gradient evaluations) -> run(x0, generator)
    gradient_evaluations: Callable[[int], int] = lambda n: n


def channels_last(model: ClassifierEnergy) -> ClassifierEnergy:
    """A copy of ``model`` with its convolution weights in channels-last layout (same values)."""
    return copy.deepcopy(model).to(memory_format=torch.channels_last)


def sampling_variants(model: ClassifierEnergy, device: torch.device, modes: list[str]) -> list[Variant]:
    network = model.network
    model_cl = channels_last(model)

    def bare(bf16: bool) -> Callable[[int], Run]:
        return lambda n: lambda x, g: bare_sgld(network, x, n, g, bf16=bf16)

    def ebmlib(make_sampler: Callable[[int], Sampler], on: ClassifierEnergy = model) -> Callable[[int], Run]:
        def make(n: int) -> Run:
            sampler = make_sampler(n)
            return lambda x, g: sampler.sample(on, x, generator=g)
        return make

    def langevin(on: ClassifierEnergy = model, **fast: Any) -> Callable[[int], Run]:
        return ebmlib(lambda n: Langevin(STEP_SIZE, NOISE_STD, n_steps=n, clamp=CLAMP, **fast), on)

    every = {
        "bare": Variant("bare fp32", bare(False)),
        "bare-bf16": Variant("bare bf16", bare(True)),
        "langevin": Variant("Langevin fp32", langevin()),
        "langevin-bf16": Variant("Langevin bf16", langevin(precision="bf16")),
        "langevin-compile": Variant("Langevin compile", langevin(compile_gradient=True)),
        "langevin-compile-bf16": Variant("Langevin compile+bf16", langevin(compile_gradient=True, precision="bf16")),
        "langevin-cl": Variant("Langevin fp32, channels_last model", langevin(model_cl)),
        "langevin-bf16-cl": Variant("Langevin bf16, channels_last model", langevin(model_cl, precision="bf16")),
        "langevin-compile-bf16-cl": Variant("Langevin compile+bf16, channels_last model",
                                            langevin(model_cl, compile_gradient=True, precision="bf16")),
        "langevin-cudagraph": Variant("Langevin cuda_graph", langevin(cuda_graph=True)),
        "langevin-cudagraph-bf16": Variant("Langevin cuda_graph+bf16", langevin(cuda_graph=True, precision="bf16")),
        # MALA: one evaluation per step plus the start; HMC: N_LEAPFROG per step plus the start.
        "mala": Variant("MALA fp32", ebmlib(lambda n: MALA(1e-4, n_steps=n)), lambda n: n + 1),
        "hmc": Variant("HMC fp32", ebmlib(lambda n: HMC(1e-2, N_LEAPFROG, n_steps=max(1, n // N_LEAPFROG))),
                       lambda n: N_LEAPFROG * max(1, n // N_LEAPFROG) + 1),
    }
    if device.type != "cuda":
        modes = [m for m in modes if "cudagraph" not in m]
    if "bare" not in modes:
        modes = ["bare", *modes]
    return [every[m] for m in modes]


ALL_MODES = ["bare", "bare-bf16", "langevin", "langevin-bf16", "langevin-compile", "langevin-compile-bf16",
             "langevin-cl", "langevin-bf16-cl", "langevin-compile-bf16-cl", "langevin-cudagraph",
             "langevin-cudagraph-bf16", "mala", "hmc"]


# ---------------------------------------------------------------------------------------------
# Timing and memory


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], object], device: torch.device) -> tuple[float, float, int]:
    """Wall-clock seconds, process CPU seconds and minor page faults of one call.

    Page faults are where fresh memory is mapped: glibc returns freed memory above its trim
    threshold to the system, so a loop of large allocations maps (and zeroes) it again every
    step, which costs CPU time (``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` tune it).
    """
    synchronize(device)
    start, start_cpu, start_faults = time.perf_counter(), time.process_time(), minor_faults()
    function()
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - start_cpu, minor_faults() - start_faults


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def peak_memory_mib(function: Callable[[], object], device: torch.device) -> float | None:
    """Peak tensor memory allocated above the level before the call, in MiB."""
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        function()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    try:  # CPU: replay the profiler's allocation events in time order
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            function()
        events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                        if e.name() == "[memory]")
    except Exception:  # noqa: BLE001 - memory is a nice-to-have; the timings stand without it
        return None
    level = peak = 0
    for _, nbytes in events:
        level += nbytes
        peak = max(peak, level)
    return peak / 2**20


@dataclass
class Row:
    variant: str
    batch_size: int
    n_steps: int
    gradient_evaluations: int
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # process CPU time of the same visits
    page_faults: list[int] = field(default_factory=list)  # minor page faults of the same visits
    first_call_s: float | None = None  # the warm-up call (compile, capture); once per variant and shape
    peak_mib: float | None = None
    median_s: float = 0.0
    ms_per_evaluation: float = 0.0
    chain_steps_per_s: float = 0.0
    ratio_to_bare: float = 0.0
    ratio_to_bare_of_minima: float = 0.0  # min over rounds: less sensitive to other load on the machine
    ratio_to_bare_cpu: float = 0.0  # medians of CPU time: with one thread, steady under other load


def summarize(rows: list[Row], baseline: str) -> None:
    for row in rows:
        row.median_s = statistics.median(row.seconds)
        row.ms_per_evaluation = 1e3 * row.median_s / row.gradient_evaluations
        row.chain_steps_per_s = row.batch_size * row.gradient_evaluations / row.median_s
    bare = {(r.batch_size, r.n_steps): r for r in rows if r.variant == baseline}
    for row in rows:
        base = bare[row.batch_size, row.n_steps]
        row.ratio_to_bare = row.ms_per_evaluation / base.ms_per_evaluation
        row.ratio_to_bare_of_minima = (min(row.seconds) / row.gradient_evaluations) / (
            min(base.seconds) / base.gradient_evaluations)
        row.ratio_to_bare_cpu = (statistics.median(row.cpu_seconds) / row.gradient_evaluations) / (
            statistics.median(base.cpu_seconds) / base.gradient_evaluations)


Case = tuple[Row, Callable[[], object], tuple[object, ...]]  # row, run, warm-up key


def interleaved(cases: list[Case], rounds: int, device: torch.device) -> None:
    """Time every case once per round, rotating the order, after an uncounted warm-up visit.

    Cases sharing a warm-up key (same variant and shapes; compiled code is reused across
    numbers of steps) are warmed once.
    """
    warmed: set[tuple[object, ...]] = set()
    for row, run, warm_key in cases:
        if warm_key not in warmed:
            warmed.add(warm_key)
            row.first_call_s = timed(run, device)[0]
            print(f"  warm-up {row.variant:30s} B={row.batch_size:<4d} steps={row.n_steps:<3d} "
                  f"{row.first_call_s:7.2f} s", file=sys.stderr, flush=True)
    for r in range(rounds):
        shift = r % len(cases)
        for row, run, _ in cases[shift:] + cases[:shift]:
            wall, cpu, faults = timed(run, device)
            row.seconds.append(wall)
            row.cpu_seconds.append(cpu)
            row.page_faults.append(faults)
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Benchmarks


def build_model(device: torch.device, image: str = "28x28x1") -> ClassifierEnergy:
    torch.manual_seed(0)
    return ClassifierEnergy(IMAGES[image][1](), n_classes=10).to(device)


def benchmark_sampling(args: argparse.Namespace, device: torch.device) -> list[Row]:
    model = build_model(device, args.image)
    shape = IMAGES[args.image][0]
    variants = sampling_variants(model, device, args.modes)
    cases: list[Case] = []
    for batch_size in args.batch_sizes:
        x0 = torch.rand(batch_size, *shape, generator=torch.Generator().manual_seed(1)).to(device) * 2 - 1
        for n_steps in args.steps:
            for variant in variants:
                run = variant.make(n_steps)
                generator = torch.Generator(device).manual_seed(0)
                row = Row(variant.name, batch_size, n_steps, variant.gradient_evaluations(n_steps))
                graph = "cuda_graph" in variant.name  # a CUDA graph is captured per number of steps
                cases.append((row, functools.partial(run, x0, generator),
                              (variant.name, batch_size, n_steps if graph else None)))
    interleaved(cases, args.rounds, device)
    peaks: dict[tuple[str, int], float | None] = {}  # memory does not grow with the number of steps
    for row, _, _ in cases:
        if (row.variant, row.batch_size) not in peaks:
            run = next(v for v in variants if v.name == row.variant).make(2)
            x0 = torch.rand(row.batch_size, *shape, device=device) * 2 - 1
            generator = torch.Generator(device).manual_seed(0)
            peaks[row.variant, row.batch_size] = peak_memory_mib(lambda: run(x0, generator), device)  # noqa: B023
        row.peak_mib = peaks[row.variant, row.batch_size]
    rows = [row for row, _, _ in cases]
    summarize(rows, "bare fp32")
    return rows


def jem_recipe(device: torch.device, sampler: Langevin,
               memory_format: torch.memory_format = torch.contiguous_format, image: str = "28x28x1") -> JEM:
    """The MNIST example's JEM: CE + class-conditional CD + energy L2, per-class replay buffer."""
    model = build_model(device, image).to(memory_format=memory_format)
    buffer = ReplayBuffer(10000, UniformInit(IMAGES[image][0]), 0.05, n_classes=10,
                          generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = jem_loss(p_x_weight=0.0, p_x_given_y_weight=1.0, regularization_weight=0.1)
    return JEM(model, sampler, buffer, optimizer, loss, input_noise_std=0.03).to(device)


def bare_jem_iteration(recipe: JEM, n_steps: int, bf16: bool) -> Callable[[Tensor, Tensor, torch.Generator], None]:
    """The same iteration written by hand: buffer draw, bare SGLD, one forward/backward, Adam step."""
    network, samples = recipe.model.network, recipe.buffer.samples
    slots = recipe.buffer.slots_per_class

    def iteration(x: Tensor, y: Tensor, generator: torch.Generator) -> None:
        device, batch = x.device, x.shape[0]
        x = x + 0.03 * torch.randn(x.shape, generator=generator, device=device)
        y_neg = torch.randint(10, (batch,), generator=generator, device=device)
        index = y_neg * slots + torch.randint(slots, (batch,), generator=generator, device=device)
        fresh = torch.rand(x.shape, generator=generator, device=device) * 2 - 1
        reinit = torch.rand(batch, generator=generator, device=device) < 0.05
        x0 = torch.where(reinit[:, None, None, None], fresh, samples[index])
        x_neg = bare_sgld(network, x0, n_steps, generator, y=y_neg, bf16=bf16)
        samples[index] = x_neg
        logits_pos, logits_neg = network(torch.cat([x, x_neg])).split([batch, batch])
        energy_pos = -logits_pos.gather(1, y[:, None])[:, 0]
        energy_neg = -logits_neg.gather(1, y_neg[:, None])[:, 0]
        loss = (F.cross_entropy(logits_pos, y) + energy_pos.mean() - energy_neg.mean()
                + 0.1 * (energy_pos.pow(2).mean() + energy_neg.pow(2).mean()))
        recipe.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        recipe.optimizer.step()

    return iteration


def two_iterations(step: Callable[[Tensor, Tensor, torch.Generator], object], x: Tensor, y: Tensor,
                   generator: torch.Generator) -> None:
    step(x, y, generator)
    step(x, y, generator)


def benchmark_jem(args: argparse.Namespace, device: torch.device) -> list[Row]:
    n_steps, batch = args.jem_steps, args.jem_batch_size
    x = torch.rand(batch, *IMAGES[args.image][0], generator=torch.Generator().manual_seed(2)).to(device) * 2 - 1
    y = torch.randint(10, (batch,), generator=torch.Generator().manual_seed(3)).to(device)

    def sampler(**fast: Any) -> Langevin:
        return Langevin(STEP_SIZE, NOISE_STD, n_steps=n_steps, clamp=CLAMP, **fast)

    def library(recipe: JEM) -> Callable[[Tensor, Tensor, torch.Generator], object]:
        return recipe.training_step

    make_recipe = functools.partial(jem_recipe, image=args.image)
    makers: dict[str, Callable[[], Callable[[Tensor, Tensor, torch.Generator], object]]] = {
        "bare JEM iteration fp32": lambda: bare_jem_iteration(make_recipe(device, sampler()), n_steps, False),
        "JEM.training_step fp32": lambda: library(make_recipe(device, sampler())),
        "bare JEM iteration bf16": lambda: bare_jem_iteration(make_recipe(device, sampler()), n_steps, True),
        "JEM.training_step bf16 sampler": lambda: library(make_recipe(device, sampler(precision="bf16"))),
        "JEM.training_step bf16 sampler, channels_last model":
            lambda: library(make_recipe(device, sampler(precision="bf16"), memory_format=torch.channels_last)),
    }
    if device.type == "cuda":
        makers["JEM.training_step cuda_graph"] = lambda: library(make_recipe(device, sampler(cuda_graph=True)))
    cases: list[Case] = []
    for name, make in makers.items():
        step = make()
        generator = torch.Generator(device).manual_seed(0)
        row = Row(name, batch, n_steps, n_steps)
        cases.append((row, functools.partial(two_iterations, step, x, y, generator), (name,)))
    interleaved(cases, args.rounds, device)
    for row, run, _ in cases:
        row.peak_mib = peak_memory_mib(run, device)
    rows = [row for row, _, _ in cases]
    for row in rows:
        row.seconds = [s / 2 for s in row.seconds]  # two iterations per visit
        row.cpu_seconds = [s / 2 for s in row.cpu_seconds]
        row.page_faults = [f // 2 for f in row.page_faults]
    summarize(rows, "bare JEM iteration fp32")
    return rows


# ---------------------------------------------------------------------------------------------
# Report


def machine(device: torch.device) -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in (platform.processor(), platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = [f for f in line.split(":", 1)[1].split() if f.startswith(("amx", "avx512_bf16"))]
    except OSError:
        pass
    info: dict[str, object] = {
        "cpu": cpu, "cpu_bf16_flags": flags, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "device": str(device), "load_average_start": os.getloadavg(),
        "allocator_settings": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def faults_per(row: Row, sampling: bool) -> float:
    """Median minor page faults per gradient evaluation (sampling) or per iteration."""
    if not row.page_faults:
        return 0.0
    return statistics.median(row.page_faults) / (row.gradient_evaluations if sampling else 1)


def table(rows: list[Row], per: str) -> str:
    lines = [f"| variant | batch | steps | {per}/s | ms per {per} | ratio to bare fp32 | ratio of minima "
             f"| ratio of CPU time | page faults per {per.split('-')[-1]} | peak MiB | first call s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        peak = "n/a" if r.peak_mib is None else f"{r.peak_mib:.0f}"
        first = "" if r.first_call_s is None else f"{r.first_call_s:.1f}"
        sampling = per == "sample-step"
        rate, ms = (r.chain_steps_per_s, r.ms_per_evaluation) if sampling else (1 / r.median_s, 1e3 * r.median_s)
        lines.append(f"| {r.variant} | {r.batch_size} | {r.n_steps} | {rate:,.1f} | {ms:.2f} | "
                     f"{r.ratio_to_bare:.3f} | {r.ratio_to_bare_of_minima:.3f} | {r.ratio_to_bare_cpu:.3f} | "
                     f"{faults_per(r, sampling):,.0f} | {peak} | {first} |")
    return "\n".join(lines)


def markdown(report: dict, sampling: list[Row], jem: list[Row]) -> str:
    m = report["machine"]
    parts = [
        f"# Sampler throughput on {m.get('gpu', m['cpu'])}",
        "",
        f"- command: `{report['command']}`",
        f"- device: {m['device']}; CPU: {m['cpu']} ({m['logical_cpus']} logical CPUs, {m['torch_threads']} torch "
        f"threads, flags {' '.join(m['cpu_bf16_flags']) or 'none'}); torch {m['torch']}, Python {m['python']}",
        f"- load average (1/5/15 min) at start {fmt_load(m['load_average_start'])}, "
        f"at end {fmt_load(m['load_average_end'])}; {report['rounds']} interleaved rounds, medians; "
        f"total {report['total_s'] / 60:.1f} min",
        f"- C allocator settings: {allocator_settings(m)}",
        f"- network: {report['network']} as ClassifierEnergy on {report['image']} inputs; SGLD step 1.0, noise 0.01, "
        "clamp [-1, 1]",
        "",
    ]
    columns = ("*Ratio to bare fp32*: median time over the bare fp32 loop's median, at the same batch size and "
               "steps; *ratio of minima*: the same with the fastest round of each, less sensitive to other load; "
               "*ratio of CPU time*: the same with medians of the process's CPU time, steady under other load when "
               "torch runs one thread; *page faults*: median minor page faults (freshly mapped memory, which "
               "the C allocator hands back and maps again) per step, their cost is in the times; "
               "*peak MiB*: tensor memory allocated above the starting level during a short run; *first call*: "
               "the uncounted warm-up call (compilation, graph capture), once per variant and shape.")
    if sampling:
        parts += ["## Sampling", "",
                  "One *sample-step* is one chain advanced by one gradient evaluation (MALA: one step plus the "
                  "start; HMC: 5 leapfrog steps per step plus the start); times are per gradient evaluation. "
                  + columns, "",
                  table(sampling, "sample-step"), ""]
    if jem:
        parts += ["## JEM training iteration", "",
                  "One `JEM.training_step` (per-class buffer draw, SGLD, one forward/backward of data and negatives, "
                  "Adam step) against the same iteration written by hand; `steps` = SGLD steps per iteration. "
                  + columns, "",
                  table(jem, "iteration"), ""]
    return "\n".join(parts)


def allocator_settings(machine_info: dict[str, Any]) -> str:
    """The ``MALLOC_*`` environment of the run, or the default."""
    settings = machine_info.get("allocator_settings") or {}
    return " ".join(f"{k}={v}" for k, v in settings.items()) or "glibc defaults (no MALLOC_* variables)"


def fmt_load(load: Any) -> str:
    return " / ".join(f"{v:.2f}" for v in load)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--steps", type=int, nargs="+", default=[20, 60], help="gradient evaluations per run")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds (after one warm-up round)")
    p.add_argument("--modes", nargs="+", default=ALL_MODES, choices=ALL_MODES)
    p.add_argument("--jem-steps", type=int, default=20, help="SGLD steps per JEM iteration")
    p.add_argument("--jem-batch-size", type=int, default=64)
    p.add_argument("--skip-sampling", action="store_true")
    p.add_argument("--skip-jem", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="batch 128, 20 steps, 3 rounds")
    p.add_argument("--image", default="28x28x1", choices=sorted(IMAGES),
                   help="28x28x1: SwishCNN(width=32); 32x32x3: WideResNet(depth=16, width=2)")
    p.add_argument("--out", default=None,
                   help="output stem (default: benchmarks/results/<device>, or <device>_32x32x3 with --image 32x32x3)")
    args = p.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.steps, args.rounds = [128], [20], 3
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    report: dict = {"command": " ".join(["python3", "benchmarks/sampler_throughput.py", *sys.argv[1:]]),
                    "machine": machine(device), "rounds": args.rounds, "image": args.image,
                    "network": IMAGES[args.image][2]}
    sampling = [] if args.skip_sampling else benchmark_sampling(args, device)
    jem = [] if args.skip_jem else benchmark_jem(args, device)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["total_s"] = time.perf_counter() - start
    report["sampling"] = [asdict(r) for r in sampling]
    report["jem"] = [asdict(r) for r in jem]
    text = markdown(report, sampling, jem)
    print(text)
    stem = Path(args.out) if args.out else RESULTS / (device.type if args.image == "28x28x1"
                                                      else f"{device.type}_{args.image}")
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(text + "\n")
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
