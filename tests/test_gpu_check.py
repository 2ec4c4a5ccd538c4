"""benchmarks/gpu_check.py: its CPU path end to end in a tiny configuration, its verdicts and what it publishes.

The CUDA parts cannot run here; what they feed into (ratios, the speed target, the published cuda.md)
is checked on a CUDA run's summary made by hand.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY_BENCHMARK = "--benchmark-args=--batch-sizes 4 --steps 2 --rounds 1 --modes bare langevin langevin-bf16"
TINY_EXAMPLE = "--example-args=--train-size 100 --test-size 50 --calibration-size 20 --steps 2 --eval-steps 2"
CUDA_GRAPH_CHECK = "CUDA graph against eager, same start and seed"
BF16_CHECK = "bf16 against fp32 chains, same start and seed"


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_check():
    yield load(ROOT / "benchmarks" / "gpu_check.py", "gpu_check_script")
    del sys.modules["gpu_check_script"]


@pytest.fixture()
def tiny(gpu_check, monkeypatch):
    """The CPU plan with 4 chains and 3 steps in the correctness check."""
    monkeypatch.setitem(gpu_check.PLANS, "cpu", dataclasses.replace(gpu_check.PLANS["cpu"], chains=4, n_steps=3))
    return gpu_check


def statuses(summary: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["status"] for check in summary["checks"]}


def test_cpu_path_writes_every_result_and_a_well_formed_summary(tiny, tmp_path):
    out = tmp_path / "check"
    assert tiny.main(["--device", "cpu", "--out", str(out), TINY_BENCHMARK, TINY_EXAMPLE]) == 0
    for name in ("summary.md", "summary.json", "sampler_throughput.json", "sampler_throughput.md",
                 "sampler_throughput.log", "mnist_quick.log", "mnist_quick/metrics.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True and summary["device"] == "cpu" and summary["total_s"] > 0
    assert summary["environment"]["torch"] == torch.__version__ and summary["environment"]["capability"] is None
    assert statuses(summary) == {CUDA_GRAPH_CHECK: "not applicable", BF16_CHECK: "passed",
                                 "sampler benchmark": "passed", "main job: mnist_jem.py --quick": "passed"}
    checks = {check["name"]: check for check in summary["checks"]}
    assert all(check["seconds"] >= 0 for check in summary["checks"])
    assert checks["sampler benchmark"]["seconds"] > 0 and checks["main job: mnist_jem.py --quick"]["seconds"] > 0

    bf16 = checks[BF16_CHECK]["details"]  # autocast really changed the chains, within the tolerance
    assert 0 < bf16["max_abs_position_difference"] <= bf16["position_tolerance"] == tiny.BF16_POSITION_ATOL
    assert 0 < bf16["max_abs_energy_difference"] <= bf16["energy_tolerance"] == tiny.BF16_ENERGY_ATOL

    benchmark = checks["sampler benchmark"]  # the last --modes wins: no compile in this tiny run
    assert benchmark["command"].startswith("python3 benchmarks/sampler_throughput.py --device cpu --threads 1")
    rows = {row["variant"]: row for row in benchmark["details"]["sampling"]}
    assert set(rows) == {"bare fp32", "Langevin fp32", "Langevin bf16"}
    assert rows["Langevin fp32"]["time_ratio"] == rows["Langevin fp32"]["speedup"] == 1.0
    report = json.loads((out / "sampler_throughput.json").read_text())  # the ratios are the benchmark's times'
    ms = {row["variant"]: row["ms_per_evaluation"] for row in report["sampling"]}
    assert rows["Langevin bf16"]["time_ratio"] == pytest.approx(ms["Langevin bf16"] / ms["Langevin fp32"], rel=1e-12)
    assert rows["bare fp32"]["speedup"] == pytest.approx(ms["Langevin fp32"] / ms["bare fp32"], rel=1e-12)
    (skipped,) = benchmark["details"]["skipped"]
    assert "Langevin cuda_graph" in skipped and "skipped on cpu" in skipped
    assert benchmark["details"]["targets"] == []  # the speed target is a GPU one

    example = checks["main job: mnist_jem.py --quick"]
    assert example["command"] == f"python3 examples/mnist_jem.py --quick --device cpu --no-progress --out " \
                                 f"{out / 'mnist_quick'} {TINY_EXAMPLE.split('=', 1)[1]}"
    metrics = json.loads((out / "mnist_quick" / "metrics.json").read_text())
    assert example["details"]["metrics"]["test_accuracy"] == metrics["test_accuracy"]
    assert metrics["steps"] == 2 and "metrics.json" in example["details"]["outputs"]

    text = (out / "summary.md").read_text()
    assert text.startswith("# GPU check on ") and "compute capability: n/a (CPU)" in text
    assert "**no check failed** (3 passed, 1 skipped or not applicable)" in text
    assert f"| {CUDA_GRAPH_CHECK} | not applicable |" in text and f"| {BF16_CHECK} | passed |" in text
    assert "| Langevin bf16 | 4 | 2 |" in text and "skipped on cpu" in text
    assert "## Main job" in text and "## Sampler throughput on" in text  # the benchmark's tables, one level down


def test_a_check_outside_its_tolerance_fails_the_run(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(tiny, "BF16_POSITION_ATOL", 0.0)  # bf16 chains never match fp32 exactly
    out = tmp_path / "check"
    assert tiny.main(["--device", "cpu", "--out", str(out), "--skip", "benchmark", "example"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is False
    assert statuses(summary) == {CUDA_GRAPH_CHECK: "not applicable", BF16_CHECK: "failed",
                                 "sampler benchmark": "skipped", "main job: mnist_jem.py --quick": "skipped"}
    assert f"**1 of 4 checks failed**: {BF16_CHECK}" in (out / "summary.md").read_text()
    with pytest.raises(SystemExit, match="is a cpu run; only a cuda run is published"):
        tiny.main(["--publish-from", str(out)])


def test_bad_requests_are_refused_before_any_work(gpu_check, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--device", "cpu", "--publish", "--out", str(tmp_path / "a")])
    assert "--publish writes benchmarks/results/cuda.md, so it needs --device cuda" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match=r"--device cuda: torch.cuda.is_available\(\) is False"):
        gpu_check.main(["--device", "cuda", "--out", str(tmp_path / "b")])
    with pytest.raises(SystemExit, match="no summary.json in"):
        gpu_check.main(["--publish-from", str(tmp_path)])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def benchmark_row(variant: str, ms: float, batch_size: int = 128, n_steps: int = 20) -> dict[str, Any]:
    """A sampling row as sampler_throughput.py writes it (the fields the GPU check reads)."""
    return {"variant": variant, "batch_size": batch_size, "n_steps": n_steps, "gradient_evaluations": n_steps,
            "ms_per_evaluation": ms, "cpu_seconds": [ms * n_steps / 2e3] * 3, "first_call_s": 1.5}


@pytest.mark.parametrize(("graph_ms", "verdict"), [(4.0, "met (2.50x)"), (6.0, "NOT met (1.67x)")])
def test_a_cuda_run_is_published_as_markdown_the_docs_build_reads(gpu_check, tmp_path, graph_ms, verdict):
    docutils_core = pytest.importorskip("docutils.core", reason="the docs extra (docutils) converts the page")
    rows = [benchmark_row("bare fp32", 9.0), benchmark_row("Langevin fp32", 10.0),
            benchmark_row("Langevin bf16", 8.0), benchmark_row("Langevin cuda_graph", graph_ms),
            benchmark_row("Langevin fp32", 20.0, batch_size=512), benchmark_row("Langevin cuda_graph", 16.0, 512)]
    sampling = gpu_check.eager_ratios(rows, gpu_check.EAGER)
    graph = {(r["variant"], r["batch_size"]): r for r in sampling}[("Langevin cuda_graph", 128)]
    assert graph["speedup"] == pytest.approx(10.0 / graph_ms) and graph["time_ratio"] == pytest.approx(graph_ms / 10)
    (target,) = gpu_check.speed_targets(sampling)
    assert target["met"] is (graph_ms <= 5.0) and target["measured"] == pytest.approx(10.0 / graph_ms)

    folder = tmp_path / "cuda_run"
    folder.mkdir()
    environment = {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "capability": "9.0", "memory_gib": 79.1,
                   "cuda": "12.8", "cudnn": 90800, "bf16_native": True, "torch": "2.14.1", "python": "3.11.7",
                   "platform": "Linux", "cpu": "Xeon", "logical_cpus": 16, "commit": "abc1234"}
    checks = [
        gpu_check.Check(CUDA_GRAPH_CHECK, result="max abs difference of positions 0 (tolerance 0.0001)"),
        gpu_check.Check(BF16_CHECK, "failed", result="RuntimeError: `x` | y * z needs MALLOC_TRIM_THRESHOLD_ set"),
        gpu_check.Check("sampler benchmark", seconds=60.0, result="4 sampling rows",
                        command="python3 benchmarks/sampler_throughput.py --device cuda",
                        details={"sampling": sampling, "jem": [], "targets": [target]}),
        gpu_check.Check("main job: mnist_jem.py --quick", seconds=20.0, result="12 training steps",
                        command="python3 examples/mnist_jem.py --quick --device cuda --no-progress --out x"),
    ]
    summary = {"command": "python3 benchmarks/gpu_check.py --device cuda", "device": "cuda", "started": "today",
               "environment": environment, "checks": [dataclasses.asdict(c) for c in checks], "ok": False,
               "total_s": 100.0}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "sampler_throughput.json").write_text(json.dumps({"sampling": rows}))
    (folder / "sampler_throughput.md").write_text("# Sampler throughput on a GPU\n\n| variant | ms |\n|---|---:|\n"
                                                  "| bare fp32 | 9.0 |\n")
    results = tmp_path / "results"
    assert gpu_check.publish(folder, results) == [results / "cuda.md", results / "cuda.json"]
    text = (results / "cuda.md").read_text()
    assert "compute capability 9.0" in text and f"**1 of 4 checks failed**: {BF16_CHECK}" in text
    assert f"| Langevin cuda_graph | 128 | 20 | {graph_ms:.3f} |" in text and "| Langevin bf16 | 128 | 20 |" in text
    assert f"target: cuda_graph=True gives at least 2x the eager fp32 throughput (batch 128, 20 steps): {verdict}" \
        in text
    assert "## Sampler throughput on a GPU" in text
    published = json.loads((results / "cuda.json").read_text())
    assert published["gpu_check"] == summary and published["sampler_throughput"] == {"sampling": rows}

    # The docs include benchmarks/results/*.md through docs/scripts/rst_tables.py, with warnings as errors.
    tables = load(ROOT / "docs" / "scripts" / "rst_tables.py", "docs_scripts_rst_tables_for_gpu_check")
    try:
        rst = tables.markdown_to_rst(text)
    finally:
        del sys.modules["docs_scripts_rst_tables_for_gpu_check"]
    document = docutils_core.publish_doctree(rst, settings_overrides={"halt_level": 2, "report_level": 2})
    page = document.astext()
    assert "RuntimeError: 'x' / y * z needs MALLOC_TRIM_THRESHOLD_ set" in page  # escaped, not markup
    assert "Langevin cuda_graph" in page
