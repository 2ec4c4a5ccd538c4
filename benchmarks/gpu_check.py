"""GPU check: the sampler's fast paths (speed and correctness) and the main job, on one device.

One command runs the checks below on ``--device`` and writes everything into one folder:

1. **sampler benchmark**: ``benchmarks/sampler_throughput.py`` on the device, eager fp32 ``Langevin``
   (the default path) against bf16 autocast, ``torch.compile`` of the gradient and, on CUDA only,
   CUDA graphs, as ratios to eager fp32 measured in the same run (on cpu the CUDA-graph variants
   are skipped, with the reason in the results);
2. **correctness**: a ``cuda_graph=True`` run against an eager one from the same start with the
   same seed (capture, replay, new start, new seed; on cpu: not applicable), and bf16 chains
   against fp32 chains, each within a stated tolerance;
3. **main job**: ``examples/mnist_jem.py --quick`` on the device.

On cpu the sizes are small (about a minute on 2 cores; CI runs it so); on a GPU it takes a few
minutes. Exit status 1 if a check fails: a correctness check outside its tolerance, or the
benchmark or the main job ending with an error. Speed targets are reported, not enforced.

Usage::

    python3 benchmarks/gpu_check.py --device cuda            # on a GPU
    python3 benchmarks/gpu_check.py --device cpu             # the CPU path (CI)
    python3 benchmarks/gpu_check.py --device cuda --publish  # then write benchmarks/results/cuda.{md,json}
    python3 benchmarks/gpu_check.py --publish-from benchmarks/results/gpu_check/cuda   # publish an earlier run

Outputs in ``--out`` (default ``benchmarks/results/gpu_check/<device>``): ``summary.md`` (environment,
each check's result and timings), ``summary.json`` (the same, machine-readable), the benchmark's
``sampler_throughput.{json,md,log}`` and the main job's ``mnist_quick/`` folder and ``mnist_quick.log``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ebmlib.models import ClassifierEnergy, SwishCNN
from ebmlib.samplers import Langevin, energy_and_grad
from ebmlib.training import resolve_precision

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BENCHMARK = "benchmarks/sampler_throughput.py"
EXAMPLE = "examples/mnist_jem.py"
TIMEOUT_S = 900  # per subprocess: a hung compile or capture fails its check instead of the whole run

EAGER = "Langevin fp32"  # the benchmark's name of the default path: every ratio here is to it
EAGER_JEM = "JEM.training_step fp32"
CUDA_GRAPH_TARGET = 2.0  # benchmarks/README.md: on a GPU, cuda_graph=True gives at least 2x eager throughput
TARGET_BATCH, TARGET_STEPS = 128, 20

STEP_SIZE, NOISE_STD, CLAMP = 1.0, 0.01, (-1.0, 1.0)  # the MNIST example's SGLD, as in the benchmark
HEAD_SCALE = 30.0  # as tests/test_fast_paths.py: an untrained head gives nearly flat energies; scaled, they differ
CUDA_GRAPH_ATOL = 1e-4
"""Positions, CUDA graph against eager: the replay runs eager's kernels, so only float32 rounding may differ."""
BF16_POSITION_ATOL = 0.02
"""Positions, bf16 against fp32 chains with the same noise: two noise standard deviations (0.01 per step).

bf16 keeps 8 significant bits, so each gradient differs by about 1%; tests/test_fast_paths.py holds
positions to 0.01 on 32 chains (measured on CPU: 7e-4 after 20 steps); this check is looser, for
other devices' bf16 kernels and more chains."""
BF16_ENERGY_ATOL = 5e-3
"""Final energies (evaluated in fp32), bf16 against fp32 chains: a third of their spread over chains
(about 0.015 on this network; measured on CPU: 1e-4 after 20 steps)."""

CPU_MODES = ("bare", "langevin", "langevin-bf16", "langevin-compile")
CUDA_MODES = ("bare", "langevin", "langevin-bf16", "langevin-bf16-cl", "langevin-compile", "langevin-cudagraph",
              "langevin-cudagraph-bf16")
CUDA_ONLY = {"langevin-cudagraph": "Langevin cuda_graph", "langevin-cudagraph-bf16": "Langevin cuda_graph+bf16"}


@dataclass(frozen=True)
class Plan:
    """One device's sizes: the benchmark's arguments, and the correctness checks' chains and SGLD steps."""

    benchmark_args: tuple[str, ...]
    chains: int
    n_steps: int


PLANS = {
    # batch 128 and 20 steps: where benchmarks/README.md states the CUDA-graph target; 512: a fuller GPU.
    "cuda": Plan(("--batch-sizes", "128", "512", "--steps", "20", "--rounds", "7", "--modes", *CUDA_MODES),
                 chains=128, n_steps=20),
    # small, one thread: the compile warm-up is much of it; bf16 is emulated, slowly, on CPUs without
    # AVX512-BF16 or AMX
    "cpu": Plan(("--threads", "1", "--batch-sizes", "16", "--steps", "5", "--rounds", "3", "--skip-jem",
                 "--modes", *CPU_MODES), chains=8, n_steps=10),
}
CHECKS = ("correctness", "benchmark", "example")


@dataclass
class Check:
    """One check's outcome: ``status`` is passed, failed, skipped or not applicable."""

    name: str
    status: str = "passed"
    seconds: float = 0.0
    result: str = ""  # one line for the summary's table
    command: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Environment and commands


def environment(device: torch.device) -> dict[str, Any]:
    """torch, Python, the machine, the device's name and capability, whether it computes bf16 natively."""
    info: dict[str, Any] = {
        "device": device.type, "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "cpu": cpu_name(), "logical_cpus": os.cpu_count(), "commit": git_commit(),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(device_name=properties.name, capability=f"{properties.major}.{properties.minor}",
                    memory_gib=round(properties.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), bf16_native=torch.cuda.is_bf16_supported())
    else:
        info.update(device_name=info["cpu"], capability=None,
                    bf16_native=resolve_precision("auto", "cpu") == "bf16")
    return info


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (as a user types it there), else absolute."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def command_line(script: str, args: list[str]) -> str:
    return shlex.join(["python3", script, *args])


def run_script(script: str, args: list[str], log: Path) -> tuple[int, float, str]:
    """Run ``python3 script args`` (this interpreter) in the repository; its output goes to ``log``.

    Returns the exit status (124 on timeout), seconds, and the log's last lines.
    """
    started = time.perf_counter()
    with log.open("w") as stream:
        try:
            rc = subprocess.run([sys.executable, script, *args], cwd=REPO, stdout=stream, stderr=subprocess.STDOUT,
                                timeout=TIMEOUT_S, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = 124
            stream.write(f"\n[gpu_check] timed out after {TIMEOUT_S} s\n")
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    return rc, time.perf_counter() - started, tail


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


# ---------------------------------------------------------------------------------------------
# 1. The sampler benchmark, as ratios to eager fp32


def benchmark_check(device: torch.device, out: Path, plan: Plan, extra: list[str]) -> Check:
    stem = out / "sampler_throughput"
    args = ["--device", device.type, *plan.benchmark_args, *extra, "--out", str(stem)]
    check = Check("sampler benchmark", command=command_line(BENCHMARK, [a if a != str(stem) else shown(stem)
                                                                        for a in args]))
    rc, seconds, tail = run_script(BENCHMARK, args, stem.with_suffix(".log"))
    check.seconds = seconds
    check.details = {"log": shown(stem.with_suffix(".log")), "exit_status": rc}
    if rc != 0 and device.type == "cuda":
        # Keep the other timings: run again without the CUDA-graph variants (the JEM table has one too).
        check.status, check.details["error"] = "failed", last_line(tail)
        check.details["log_tail"] = tail
        modes = [m for m in modes_of(args) if m not in CUDA_ONLY]
        args = [*strip_modes(args), "--modes", *modes, "--skip-jem"]
        rc, seconds, tail = run_script(BENCHMARK, args, out / "sampler_throughput_without_cuda_graphs.log")
        check.seconds += seconds
        check.details["rerun_without_cuda_graphs"] = {"command": command_line(BENCHMARK, args), "exit_status": rc}
    if rc != 0:
        check.status, check.result = "failed", f"exit status {rc}: {last_line(tail)}"
        check.details.setdefault("error", last_line(tail))
        check.details["log_tail"] = tail
        return check
    report = json.loads(stem.with_suffix(".json").read_text())
    check.details.update(files=[shown(stem.with_suffix(".json")), shown(stem.with_suffix(".md"))],
                         sampling=eager_ratios(report.get("sampling", []), EAGER),
                         jem=eager_ratios(report.get("jem", []), EAGER_JEM))
    if device.type != "cuda":
        check.details["skipped"] = [
            f"{' and '.join(CUDA_ONLY.values())}: skipped on {device.type}: a CUDA graph records CUDA kernel "
            "launches and replays them; there are none to record on a CPU (cuda_graph=True raises RuntimeError "
            "without CUDA)"]
    check.details["targets"] = speed_targets(check.details["sampling"]) if device.type == "cuda" else []
    check.result = headline(check.details["sampling"])
    if check.status == "failed":
        check.result = (f"the run failed ({check.details['error']}); rerun without the CUDA-graph variants and the "
                        f"JEM iteration: {check.result}")
    return check


def headline(sampling: list[dict[str, Any]]) -> str:
    """The speed-ups over eager fp32 at the first batch size and number of steps, in a line."""
    if not sampling:
        return "no rows"
    first = (sampling[0]["batch_size"], sampling[0]["n_steps"])
    speedups = [f"{r['variant'].removeprefix('Langevin ')} {r['speedup']:.2f}x" for r in sampling
                if (r["batch_size"], r["n_steps"]) == first and r["variant"].startswith("Langevin ")
                and r["variant"] != EAGER]
    return f"speed-up over eager fp32 (batch {first[0]}, {first[1]} steps): {', '.join(speedups) or 'none measured'}"


def modes_of(args: list[str]) -> list[str]:
    """The ``--modes`` the benchmark will use: the last ``--modes`` given wins."""
    modes: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--modes":
            modes = []
            for value in args[i + 1:]:
                if value.startswith("--"):
                    break
                modes.append(value)
    return modes


def strip_modes(args: list[str]) -> list[str]:
    kept, skipping = [], False
    for arg in args:
        if arg == "--modes":
            skipping = True
        elif skipping and arg.startswith("--"):
            skipping = False
        if not skipping:
            kept.append(arg)
    return kept


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def eager_ratios(rows: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Each benchmark row against ``baseline`` at the same batch size and steps, from the same run.

    ``time_ratio``: median time per gradient evaluation over the baseline's (below 1: faster);
    ``speedup``: its inverse (throughput over the baseline's); ``cpu_time_ratio``: the same with the
    process's CPU time (on a CPU with one thread, steady under other load).
    """
    per_step = {(r["variant"], r["batch_size"], r["n_steps"]): r for r in rows}
    ratios = []
    for r in rows:
        base = per_step.get((baseline, r["batch_size"], r["n_steps"]))
        if base is None:
            continue
        time_ratio = r["ms_per_evaluation"] / base["ms_per_evaluation"]
        cpu = median(r["cpu_seconds"]) / r["gradient_evaluations"]
        cpu_base = median(base["cpu_seconds"]) / base["gradient_evaluations"]
        ratios.append({"variant": r["variant"], "batch_size": r["batch_size"], "n_steps": r["n_steps"],
                       "ms_per_step": r["ms_per_evaluation"], "time_ratio": time_ratio, "speedup": 1 / time_ratio,
                       "cpu_time_ratio": cpu / cpu_base if cpu_base > 0 else None,
                       "first_call_s": r.get("first_call_s")})
    return ratios


def speed_targets(sampling: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """benchmarks/README.md's GPU target, against this run's rows."""
    target = (f"cuda_graph=True gives at least {CUDA_GRAPH_TARGET:g}x the eager fp32 throughput "
              f"(batch {TARGET_BATCH}, {TARGET_STEPS} steps)")
    row = next((r for r in sampling if r["variant"] == CUDA_ONLY["langevin-cudagraph"]
                and (r["batch_size"], r["n_steps"]) == (TARGET_BATCH, TARGET_STEPS)), None)
    if row is None:
        return [{"target": target, "measured": None, "met": None}]
    return [{"target": target, "measured": row["speedup"], "met": row["speedup"] >= CUDA_GRAPH_TARGET}]


# ---------------------------------------------------------------------------------------------
# 2. Correctness: the same start and seed give the same draws


def check_network(device: torch.device) -> ClassifierEnergy:
    """The benchmark's network (``SwishCNN(width=32)``), its head scaled so energies differ between inputs."""
    torch.manual_seed(0)
    model = ClassifierEnergy(SwishCNN(channels=1, width=32, n_outputs=10), n_classes=10)
    head = list(model.network.modules())[-1]
    assert isinstance(head, torch.nn.Linear), f"SwishCNN's last module is {type(head).__name__}, not the linear head"
    with torch.no_grad():
        head.weight.mul_(HEAD_SCALE)
    return model.to(device)


def sgld(n_steps: int, precision: str = "full", cuda_graph: bool = False) -> Langevin:
    """The benchmark's SGLD: step 1.0, noise 0.01, clamp [-1, 1]."""
    return Langevin(STEP_SIZE, NOISE_STD, n_steps=n_steps, clamp=CLAMP, precision=precision, cuda_graph=cuda_graph)


def start_images(n: int, device: torch.device) -> Tensor:
    """``n`` uniform 28x28 images in [-1, 1], the same on every device."""
    return (torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)


def cuda_graph_check(device: torch.device, plan: Plan) -> Check:
    """``cuda_graph=True`` against eager, each with its own generator seeded alike, as tests/test_fast_paths.py."""
    check = Check("CUDA graph against eager, same start and seed")
    if device.type != "cuda":
        check.status = "not applicable"
        check.result = f"not applicable on {device.type}: CUDA graphs need a CUDA device"
        return check
    model, x0 = check_network(device), start_images(plan.chains, device)
    eager, graphed = sgld(plan.n_steps), sgld(plan.n_steps, cuda_graph=True)
    eager_generator, graphed_generator = torch.Generator(device), torch.Generator(device)  # reused: replays
    differences = {}
    for label, x, seed in [("capture", x0, 0), ("replay", x0, 0), ("new start", x0.flip(0), 0), ("new seed", x0, 1)]:
        expected = eager.sample(model, x, generator=eager_generator.manual_seed(seed))
        got = graphed.sample(model, x, generator=graphed_generator.manual_seed(seed))
        differences[label] = float((got - expected).abs().max())
    fresh_noise = not torch.equal(graphed.sample(model, x0), graphed.sample(model, x0))  # default generator
    worst = max(differences.values())
    check.status = "passed" if worst <= CUDA_GRAPH_ATOL and fresh_noise else "failed"
    check.result = (f"max abs difference of positions {worst:.2g} (tolerance {CUDA_GRAPH_ATOL:g}) over capture, "
                    f"replay, new start, new seed; replays draw fresh noise: {'yes' if fresh_noise else 'NO'}")
    check.details = {"chains": plan.chains, "n_steps": plan.n_steps, "max_abs_difference": differences,
                     "tolerance": CUDA_GRAPH_ATOL, "fresh_noise_per_replay": fresh_noise}
    return check


def bf16_check(device: torch.device, plan: Plan) -> Check:
    """bf16 chains against fp32 chains from the same start with the same noise."""
    model, x0 = check_network(device), start_images(plan.chains, device)
    full = sgld(plan.n_steps).sample(model, x0, generator=torch.Generator(device).manual_seed(0))
    fast = sgld(plan.n_steps, precision="bf16").sample(model, x0, generator=torch.Generator(device).manual_seed(0))
    energy_full, energy_fast = energy_and_grad(model, full)[0], energy_and_grad(model, fast)[0]
    position = float((fast - full).abs().max())
    energy = float((energy_fast - energy_full).abs().max())
    spread = float(energy_full.std()) if plan.chains > 1 else math.nan
    passed = position <= BF16_POSITION_ATOL and energy <= BF16_ENERGY_ATOL
    check = Check("bf16 against fp32 chains, same start and seed", "passed" if passed else "failed")
    check.result = (f"max abs difference of positions {position:.2g} (tolerance {BF16_POSITION_ATOL:g}), "
                    f"of final energies {energy:.2g} (tolerance {BF16_ENERGY_ATOL:g}; their spread over chains "
                    f"{spread:.2g})")
    check.details = {"chains": plan.chains, "n_steps": plan.n_steps, "max_abs_position_difference": position,
                     "position_tolerance": BF16_POSITION_ATOL, "max_abs_energy_difference": energy,
                     "energy_tolerance": BF16_ENERGY_ATOL, "energy_spread": spread,
                     "moved": float((full - x0).abs().max())}
    return check


# ---------------------------------------------------------------------------------------------
# 3. The main job


def example_check(device: torch.device, out: Path, extra: list[str]) -> Check:
    folder = out / "mnist_quick"
    if folder.exists():  # a fresh run: the example refuses a folder with checkpoints unless --resume
        shutil.rmtree(folder)
    args = ["--quick", "--device", device.type, "--no-progress", "--out", str(folder), *extra]
    check = Check("main job: mnist_jem.py --quick",
                  command=command_line(EXAMPLE, [a if a != str(folder) else shown(folder) for a in args]))
    rc, check.seconds, tail = run_script(EXAMPLE, args, out / "mnist_quick.log")
    check.details = {"exit_status": rc, "log": shown(out / "mnist_quick.log"), "folder": shown(folder)}
    metrics_path = folder / "metrics.json"
    if rc != 0 or not metrics_path.is_file():
        check.status, check.result = "failed", f"exit status {rc}: {last_line(tail)}"
        check.details["log_tail"] = tail
        return check
    metrics = json.loads(metrics_path.read_text())
    keep = ("test_accuracy", "steps", "training_seconds", "wall_seconds", "device")
    check.details["metrics"] = {k: metrics[k] for k in keep if k in metrics}
    check.details["outputs"] = sorted(p.name for p in folder.iterdir())
    accuracy = metrics.get("test_accuracy")
    if not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy):
        check.status = "failed"
        check.result = f"metrics.json has no finite test_accuracy (got {accuracy!r})"
        return check
    check.result = (f"{metrics.get('steps', '?')} training steps on {metrics.get('device', device.type)}, test "
                    f"accuracy {accuracy:.3f}, {len(check.details['outputs'])} outputs")
    return check


# ---------------------------------------------------------------------------------------------
# The summary


def run_check(make: Callable[[], Check], name: str) -> Check:
    """``make()``, timed; an exception fails the check (with its message) instead of the whole run."""
    started = time.perf_counter()
    try:
        check = make()
    except Exception as error:  # noqa: BLE001 - reported as this check's failure, the others still run
        check = Check(name, "failed", result=f"{type(error).__name__}: {error}",
                      details={"traceback": traceback.format_exc()})
    if not check.seconds:
        check.seconds = time.perf_counter() - started
    print(f"gpu_check: {check.name}: {check.status} ({check.seconds:.1f} s) {check.result}", file=sys.stderr,
          flush=True)
    return check


def cell(text: object) -> str:
    """Text safe in a Markdown table cell and in the reST the docs make of it."""
    plain = str(text).replace("|", "/").replace("`", "'").replace("\n", " ").replace("*", "\\*")
    return re.sub(r"(?<=\w)_(?!\w)", r"\\_", plain)  # a word ending in _ is a link in reST


def fmt(value: float | None, digits: str = ".3f") -> str:
    return "n/a" if value is None else format(value, digits)


def markdown(summary: dict[str, Any], folder: Path | None = None) -> str:
    """summary.md (and the published cuda.md): one line per item, Markdown the docs' converter reads."""
    env, checks = summary["environment"], summary["checks"]
    failed = [c["name"] for c in checks if c["status"] == "failed"]
    verdict = (f"**{len(failed)} of {len(checks)} checks failed**: {', '.join(failed)}" if failed
               else f"**no check failed** ({sum(c['status'] == 'passed' for c in checks)} passed, "
                    f"{sum(c['status'] != 'passed' for c in checks)} skipped or not applicable)")
    if env["device"] == "cuda":
        device = (f"cuda: {env['device_name']}, compute capability {env['capability']}, {env['memory_gib']} GiB; "
                  f"CUDA {env['cuda']}, cuDNN {env['cudnn']}; bf16 native: {'yes' if env['bf16_native'] else 'no'}")
    else:
        device = (f"cpu: {env['device_name']}, {env['logical_cpus']} logical CPUs; compute capability: n/a (CPU); "
                  f"bf16 native (AVX512-BF16 or AMX): {'yes' if env['bf16_native'] else 'no'}")
    lines = [
        f"# GPU check on {env['device_name']}", "",
        f"- command: `{summary['command']}`",
        f"- result: {verdict}; total {summary['total_s']:.0f} s",
        f"- device: {device}",
        f"- torch {env['torch']}, Python {env['python']}, {env['platform']}; commit {env['commit'] or 'unknown'}; "
        f"started {summary['started']}",
        "", "## Checks", "",
        "| check | result | seconds | what was measured |", "|---|---|---:|---|",
    ]
    lines += [f"| {cell(c['name'])} | {c['status']} | {c['seconds']:.1f} | {cell(c['result'])} |" for c in checks]
    benchmark = next((c for c in checks if c["name"] == "sampler benchmark"), None)
    if benchmark and benchmark["details"].get("sampling"):
        details = benchmark["details"]
        lines += ["", "## Sampler fast paths against eager fp32", "",
                  f"Ratios to `{EAGER}` (the default path) at the same batch size and steps, measured in the same "
                  "run: *time ratio* is the median time per step over eager's (below 1 is faster), *speed-up* its "
                  "inverse, *CPU-time ratio* the same with the process's CPU time; *first call*: compilation or "
                  "graph capture. Command: " + f"`{benchmark['command']}`.", ""]
        lines += ratio_table(details["sampling"])
        if details.get("jem"):
            lines += ["", f"One JEM training iteration, as ratios to `{EAGER_JEM}`:", ""]
            lines += ratio_table(details["jem"])
        notes = [*details.get("skipped", []),
                 *(f"target: {t['target']}: " + ("not measured (no such row)" if t["met"] is None else
                                                 f"{'met' if t['met'] else 'NOT met'} ({t['measured']:.2f}x)")
                   for t in details.get("targets", []))]
        if notes:
            lines += [""] + [f"- {cell(note)}" for note in notes]
    example = next((c for c in checks if c["name"].startswith("main job")), None)
    if example and example["command"]:
        lines += ["", "## Main job", "", f"- command: `{example['command']}`",
                  f"- {example['status']} in {example['seconds']:.1f} s: {cell(example['result'])}"]
    table = folder / "sampler_throughput.md" if folder else None
    if table and table.is_file() and benchmark and benchmark["status"] != "skipped":
        lines += ["", "The benchmark's own tables (ratios there are to its bare fp32 loop):", ""]
        lines += [f"#{line}" if line.startswith("#") else line for line in table.read_text().splitlines()]
    return "\n".join(lines) + "\n"


def ratio_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| variant | batch | steps | ms per step | time ratio | speed-up | CPU-time ratio | first call s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['batch_size']} | {r['n_steps']} | {r['ms_per_step']:.3f} | "
                     f"{r['time_ratio']:.3f} | {r['speedup']:.2f}x | {fmt(r['cpu_time_ratio'])} | "
                     f"{fmt(r['first_call_s'], '.1f')} |")
    return lines


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(markdown(summary, out))


def publish(folder: Path, results: Path = RESULTS) -> list[Path]:
    """Write ``results/cuda.md`` (the summary, the benchmark's tables included) and ``results/cuda.json``
    (the summary and the benchmark's report) from a cuda run's folder.

    Raises
    ------
    SystemExit
        If ``folder`` holds no ``summary.json`` or one from another device.
    """
    path = folder / "summary.json"
    if not path.is_file():
        raise SystemExit(f"--publish-from: no summary.json in {folder}; run benchmarks/gpu_check.py there first")
    summary = json.loads(path.read_text())
    if summary["environment"]["device"] != "cuda":
        raise SystemExit(f"--publish-from: {path} is a {summary['environment']['device']} run; only a cuda run is "
                         "published (as benchmarks/results/cuda.md)")
    benchmark = folder / "sampler_throughput.json"
    results.mkdir(parents=True, exist_ok=True)
    written = [results / "cuda.md", results / "cuda.json"]
    written[0].write_text(markdown(summary, folder))
    report = json.loads(benchmark.read_text()) if benchmark.is_file() else None
    written[1].write_text(json.dumps({"gpu_check": summary, "sampler_throughput": report}, indent=1) + "\n")
    return written


# ---------------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda: the full check; cpu: small sizes, CUDA-graph parts skipped")
    p.add_argument("--out", default=None, help="results folder (default: benchmarks/results/gpu_check/<device>)")
    p.add_argument("--publish", action="store_true",
                   help="after a cuda run, write benchmarks/results/cuda.{md,json} from its summary")
    p.add_argument("--publish-from", default=None, metavar="DIR",
                   help="run nothing: publish the cuda run in DIR (say, copied back from a GPU machine)")
    p.add_argument("--skip", nargs="+", choices=CHECKS, default=[], help="checks to leave out")
    p.add_argument("--benchmark-args", default="", metavar="'ARGS'",
                   help="extra arguments for sampler_throughput.py, after this device's (write --benchmark-args='...')")
    p.add_argument("--example-args", default="", metavar="'ARGS'",
                   help="extra arguments for mnist_jem.py, after --quick (write --example-args='...')")
    args = p.parse_args(argv)
    if args.publish and args.device != "cuda":
        p.error(f"--publish writes benchmarks/results/cuda.md, so it needs --device cuda, got --device {args.device}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.publish_from:
        for path in publish(Path(args.publish_from)):
            print(f"wrote {shown(path)}", file=sys.stderr)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False on this machine; "
                         "use --device cpu for the CPU path")
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    plan = PLANS[device.type]
    out = Path(args.out) if args.out else RESULTS / "gpu_check" / device.type
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary: dict[str, Any] = {
        "command": command_line("benchmarks/gpu_check.py", argv), "device": device.type,
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "environment": environment(device),
        "plan": asdict(plan), "checks": [], "ok": True, "total_s": 0.0,
    }
    steps: list[tuple[str, str, Callable[[], Check]]] = [
        ("correctness", "CUDA graph against eager, same start and seed", lambda: cuda_graph_check(device, plan)),
        ("correctness", "bf16 against fp32 chains, same start and seed", lambda: bf16_check(device, plan)),
        ("benchmark", "sampler benchmark",
         lambda: benchmark_check(device, out, plan, shlex.split(args.benchmark_args))),
        ("example", "main job: mnist_jem.py --quick",
         lambda: example_check(device, out, shlex.split(args.example_args))),
    ]
    for group, name, make in steps:
        if group in args.skip:
            check = Check(name, "skipped", result=f"left out with --skip {group}")
        else:
            check = run_check(make, name)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        summary["checks"].append(asdict(check))
        summary["ok"] = all(c["status"] != "failed" for c in summary["checks"])
        summary["total_s"] = time.perf_counter() - started
        write_summary(out, summary)  # after every check: a crash later keeps what was measured
    print(markdown(summary, out))
    print(f"wrote {shown(out / 'summary.md')} and {shown(out / 'summary.json')}", file=sys.stderr)
    if args.publish:
        for path in publish(out):
            print(f"wrote {shown(path)}", file=sys.stderr)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
