"""Turn the run's outputs (MNIST ``metrics.json``, benchmark Markdown tables) into reST.

``docs/conf.py`` calls :func:`write_generated_pages` at the start of every build, so
the pages always show the files currently in ``docs/_static/mnist/`` and
``benchmarks/results/``; the ``.inc`` files it writes to ``docs/_generated/`` are
included by the pages and never edited by hand.

The MNIST tables read the flat metric names that ``examples/mnist_jem.py`` writes
(``from_noise/conditional_recognition``, ``ood_auroc/<set>/<score>``, ...). When
``docs/_static/mnist/`` holds ``metrics_run<i>.json`` files (several seeds, copied by
``copy_mnist_run.py``), every table shows one value per run, ``a / b / c``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any


def list_table(header: list[str], rows: list[list[str]], title: str = "") -> str:
    """A reST ``list-table`` with one header row; a cell may hold several lines (a line block of :func:`stack`)."""
    lines = [f".. list-table:: {title}".rstrip(), "   :header-rows: 1", ""]
    for row in [header, *rows]:
        cells = [(cell or " ").replace("\n", "\n       ") for cell in row]
        lines.append("   * - " + cells[0])
        lines += ["     - " + cell for cell in cells[1:]]
    return "\n".join(lines) + "\n"


def format_value(value: object) -> str:
    """Numbers with 4 significant digits, everything else as compact JSON, as inline literals."""
    if isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, int | str):
        text = str(value)
    else:
        text = json.dumps(value, separators=(", ", ": "))
        text = text if len(text) <= 80 else text[:77] + "..."
    return f"``{text}``" if text else ""


def flatten(mapping: dict, prefix: str = "") -> list[tuple[str, object]]:
    """``{"a": {"b": 1}}`` -> ``[("a.b", 1)]``."""
    items: list[tuple[str, object]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            items += flatten(value, name + ".")
        else:
            items.append((name, value))
    return items


def metrics_to_rst(metrics: dict) -> str:
    """One table per section of ``metrics.json``: a nested mapping, or the flat names ``"<section>/<rest>"``.

    Top-level numbers without a ``/`` come first, in a table of their own (``summary``).
    """
    sections: dict[str, list[tuple[str, object]]] = {}
    scalars = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            sections.setdefault(key, []).extend(flatten(value))
        elif "/" in key:
            section, rest = key.split("/", 1)
            sections.setdefault(section, []).append((rest, value))
        else:
            scalars.append([f"``{key}``", format_value(value)])
    parts = [list_table(["Metric", "Value"], scalars, "summary")] if scalars else []
    for section, items in sections.items():
        rows = [[f"``{k}``", format_value(v)] for k, v in items]
        parts.append(list_table(["Name", "Value"], rows, section) if rows else "")
    return "\n".join(parts)


def duration(seconds: float) -> str:
    """``"42 s"`` below two minutes, ``"12.5 minutes"`` above."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} minutes"


def run_facts(metrics: dict) -> str:
    """A sentence on where the MNIST figures come from: steps, data, device, times."""
    data = metrics.get("data", {})
    facts = [f"{metrics['steps']} training steps" if "steps" in metrics else "",
             f"{data['train_images']} training and {data.get('test_images', '?')} test images"
             if "train_images" in data else "",
             f"device ``{metrics['device']}``" if "device" in metrics else "",
             duration(metrics["training_seconds"]) + " of training" if "training_seconds" in metrics else "",
             duration(metrics["wall_seconds"]) + " in all, evaluation and pictures included"
             if "wall_seconds" in metrics else ""]
    return "The pictures and numbers on this page come from a run with " + ", ".join(f for f in facts if f) + ".\n"


def smoke_run_warning(metrics: dict) -> str:
    """A warning box for a ``--quick`` smoke run's outputs (``""`` for any other run)."""
    if not metrics.get("settings", {}).get("quick"):
        return ""
    return (".. warning::\n\n   The pictures and numbers on this page are from a ``--quick`` smoke run (a few steps of "
            "a tiny network on a small subset): they show the format of the outputs, not what JEM learns. Replace "
            "them with a full run as described at the end of this page.\n")


def run_summary(metrics: dict) -> str:
    """:func:`run_facts` and, for a ``--quick`` smoke run, :func:`smoke_run_warning`."""
    warning = smoke_run_warning(metrics)
    return run_facts(metrics) + ("\n" + warning if warning else "")


# ------------------------------------------------------------------------------------- the MNIST run's tables
MISSING = "–"
"""What a table cell shows for a metric a run did not write."""

TARGETS = {  # the example's targets for its default run on 2 CPU cores: metric -> (comparison, bound)
    "from_noise/conditional_recognition": (">=", 0.90),
    "from_noise/frechet_distance_ratio": ("<=", 0.10),
    "from_noise/class_share_min": (">=", 0.05),
    "ood_auroc/uniform_noise/energy": (">=", 0.99),
    "ood_auroc/inverted/energy": (">=", 0.95),
    "ood_auroc/flipped/energy": (">=", 0.90),
    "test_accuracy": (">=", 0.98),
    "calibrated/test_expected_calibration_error": ("<=", 0.02),
}
"""What the MNIST page checks each run against (``examples/mnist_jem.py`` writes the measures, not verdicts)."""

TARGET_MEASURES = {
    "from_noise/conditional_recognition": "class-conditional chains from U(-1, 1) noise recognised by the judge",
    "from_noise/frechet_distance_ratio": "unconditional chains from noise: Fréchet distance / uniform noise's",
    "from_noise/class_share_min": "unconditional chains from noise: share of the rarest class",
    "test_accuracy": "test accuracy",
    "test_expected_calibration_error": "expected calibration error (test images)",
    "calibrated/test_expected_calibration_error":
        "expected calibration error (test images), temperature fitted on held-out training images",
}
"""Plain words for the metrics that :data:`TARGETS` names (others are shown by name)."""

WALL_TIME_TARGET_SECONDS = 600.0
"""The wall-time target of the example's default run on 2 CPU cores, evaluation and pictures included."""

SAMPLE_COLUMNS = (
    ("conditional recognition", "conditional_recognition"),
    ("Fréchet distance", "frechet_distance"),
    ("FD / noise's", "frechet_distance_ratio"),
    ("rarest class share", "class_share_min"),
    ("mean energy", "mean_energy"),
)
"""Columns of the sample-quality table: header, metric name after ``<set>/``."""


def load_mnist_runs(folder: Path) -> list[dict]:
    """The runs in ``folder``: every ``metrics_run<i>.json`` in order of ``i``, or else ``metrics.json`` alone."""
    several = sorted(folder.glob("metrics_run*.json"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    paths = several or ([folder / "metrics.json"] if (folder / "metrics.json").exists() else [])
    return [json.loads(path.read_text()) for path in paths]


def number(value: object) -> str:
    """A metric as a table shows it: 3 decimals in [-1, 1], else 3 significant digits (whole numbers from 100)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value if isinstance(value, str) else MISSING
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3f}" if abs(value) <= 1 else f"{value:.3g}"


def stack(values: list[str]) -> str:
    """One value as it is; several as a reST line block, one line each (for a table cell)."""
    return values[0] if len(values) == 1 else "\n".join(f"| {value}" for value in values)


def per_run(runs: list[dict], name: str, show: Callable[[object], str] = number) -> str:
    """``name``'s value in each run, one line each (a dash for a run without it)."""
    return stack([show(run[name]) if name in run else MISSING for run in runs])


def seeds(runs: list[dict]) -> list[str]:
    """Each run's seed (from its settings), or its position."""
    return [str(run.get("settings", {}).get("seed", i)) for i, run in enumerate(runs)]


def values_note(runs: list[dict]) -> str:
    """The sentence under a table of several runs saying which value is which."""
    return "" if len(runs) < 2 else f"\nEach cell lists the runs from top to bottom: seed {', '.join(seeds(runs))}.\n"


def with_seeds(header: list[str], rows: list[list[str]], runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """For several runs, a ``seed`` column after the first one, its cells :func:`stack`-ed like the values."""
    if len(runs) < 2:
        return header, rows
    return [header[0], "seed", *header[1:]], [[row[0], stack(seeds(runs)), *row[1:]] for row in rows]


def meets(value: float, comparison: str, bound: float) -> bool:
    """Whether ``value`` meets a target: ``comparison`` is ``">="`` or ``"<="``."""
    return value >= bound if comparison == ">=" else value <= bound


def targets_table(runs: list[dict]) -> str:
    """:data:`TARGETS`: measure, target, each run's value and pass or fail, and the wall time."""
    header = ["measure", "target", *(f"seed {s}" if len(runs) > 1 else "measured" for s in seeds(runs))]
    rows = []
    for name, (comparison, bound) in TARGETS.items():
        measure = TARGET_MEASURES.get(name) or (
            f"energy-score OOD AUROC, {name.split('/')[1].replace('_', ' ')}"
            if name.startswith("ood_auroc/") and name.endswith("/energy") else f"``{name}``")
        cells = [f"{number(run[name])} ({'pass' if meets(run[name], comparison, bound) else '**fail**'})"
                 if name in run else f"{MISSING} ({MISSING})" for run in runs]
        rows.append([measure, f"{comparison} {bound:g}", *cells])
    if any("wall_seconds" in run for run in runs):
        rows.append(["wall time, evaluation and pictures included", f"<= {WALL_TIME_TARGET_SECONDS / 60:g} minutes "
                     "on 2 CPU cores", *(wall_time_verdict(run) for run in runs)])
    return list_table(header, rows)


def wall_time_verdict(run: dict) -> str:
    """``"9.1 minutes on cpu (pass)"``; no verdict for a run on another device than the target's CPU."""
    if "wall_seconds" not in run:
        return MISSING
    device = str(run.get("device", "?"))
    verdict = ("pass" if run["wall_seconds"] <= WALL_TIME_TARGET_SECONDS else "**fail**") if device == "cpu" \
        else "not the target's device"
    return f"{duration(run['wall_seconds'])} on {device} ({verdict})"


def sample_sets(runs: list[dict]) -> list[str]:
    """The sets of samples the runs measured: ``from_<start>`` in their order, then ``buffer``."""
    names = [key.split("/")[0] for run in runs for key in run if "/" in key]
    found = list(dict.fromkeys(n for n in names if n.startswith("from_")))
    return found + (["buffer"] if "buffer" in names else [])


def set_title(name: str) -> str:
    """``"from_class_gaussians"`` -> ``"from class Gaussians"``; ``"buffer"`` -> ``"the replay buffer's chains"``."""
    if name == "buffer":
        return "the replay buffer's chains"
    return name.replace("_", " ").replace("gaussians", "Gaussians")


def samples_table(runs: list[dict]) -> str:
    """Sample quality by where the chains started: recognition, Fréchet distance, its ratio, class shares, energy."""
    sets = sample_sets(runs)
    if not sets:
        return ".. note::\n\n   This ``metrics.json`` has no sample-quality metrics.\n"
    rows = [[set_title(name), *(per_run(runs, f"{name}/{metric}") for _, metric in SAMPLE_COLUMNS)]
            for name in sets]
    rows.append(["uniform noise itself (the scale's far end)", MISSING,
                 per_run(runs, "uniform_noise/frechet_distance"), number(1.0), MISSING,
                 per_run(runs, "uniform_noise/mean_energy")])
    rows.append(["the test images (the near end)", MISSING, number(0.0), number(0.0), MISSING,
                 per_run(runs, "test_images/mean_energy")])
    return list_table(*with_seeds(["chains", *(header for header, _ in SAMPLE_COLUMNS)], rows, runs)) \
        + values_note(runs)


def class_share_table(metrics: dict) -> str:
    """Each class's share of the unconditional samples of every set, for one run (the pictured one)."""
    sets = [name for name in sample_sets([metrics]) if f"{name}/class_share/0" in metrics]
    if not sets:
        return ""
    n_classes = 1 + max(int(key.rsplit("/", 1)[1]) for key in metrics if re.fullmatch(r"[^/]+/class_share/\d+", key))
    rows = [[set_title(name), *(number(metrics.get(f"{name}/class_share/{k}")) for k in range(n_classes))]
            for name in sets]
    return list_table(["chains", *map(str, range(n_classes))], rows)


def ood_table(runs: list[dict]) -> str:
    """OOD AUROC: one row per set of non-digits, one column per score."""
    names = [key.split("/")[1:] for run in runs for key in run if key.startswith("ood_auroc/") and key.count("/") == 2]
    sets, scores = (list(dict.fromkeys(n[i] for n in names)) for i in (0, 1))
    if not sets:
        return ".. note::\n\n   This ``metrics.json`` has no ``ood_auroc/<set>/<score>`` metrics.\n"
    rows = [[name.replace("_", " "), *(per_run(runs, f"ood_auroc/{name}/{score}") for score in scores)]
            for name in sets]
    header = ["test digits against", *(f"``{score}``" for score in scores)]
    return list_table(*with_seeds(header, rows, runs)) + values_note(runs)


def classification_table(runs: list[dict]) -> str:
    """Accuracy, calibration, the judge's accuracy and the run's scale (steps, times, recoveries), a column per run."""
    measures: list[tuple[str, str, Callable[[object], str]]] = [
        ("test accuracy", "test_accuracy", number),
        ("expected calibration error (15 bins)", "test_expected_calibration_error", number),
        ("the same, temperature-scaled (held-out fit)", "calibrated/test_expected_calibration_error", number),
        ("the fitted temperature", "calibrated/temperature", number),
        ("the judge's own test accuracy", "judge_test_accuracy", number),
        ("largest absolute energy seen", "max_abs_energy", number),
        ("training steps", "steps", str),
        ("complete epochs", "epochs", str),
        ("divergence recoveries", "divergence_recoveries", str),
        ("training time", "training_seconds", seconds),
        ("evaluation time", "evaluation_seconds", seconds),
        ("wall time", "wall_seconds", seconds),
    ]
    rows = [[label, *(show(run[name]) if name in run else MISSING for run in runs)] for label, name, show in measures]
    header = ["measure", *(f"seed {s}" for s in seeds(runs))] if len(runs) > 1 else ["measure", "value"]
    return list_table(header, rows)


def seconds(value: object) -> str:
    """A number of seconds as :func:`duration` writes it."""
    return duration(float(value)) if isinstance(value, int | float) else MISSING


def example_defaults(example: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The example's settings with no arguments and with ``--quick`` (``None`` if it can't be imported)."""
    try:
        spec = importlib.util.spec_from_file_location("mnist_jem_example", example)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return vars(module.parse_args([])), vars(module.parse_args(["--quick"]))
    except Exception:  # noqa: BLE001 - the page then shows the settings without a command
        return None


LEFT_OUT_OF_COMMANDS = ("resume", "no_progress")
"""Settings that do not change what a run computes (and ``--resume`` would refuse a new folder)."""


def command_line(settings: dict[str, Any], defaults: tuple[dict[str, Any], dict[str, Any]] | None) -> str | None:
    """The command that runs the example with ``settings``: the flags that differ from its defaults.

    ``None`` when a setting is unknown to the current example (a run of an older version).
    """
    if defaults is None:
        return None
    quick = bool(settings.get("quick"))
    base = defaults[1] if quick else defaults[0]
    parts = ["python3 examples/mnist_jem.py", *(["--quick"] if quick else [])]
    for name, value in settings.items():
        if name in (*LEFT_OUT_OF_COMMANDS, "quick"):
            continue
        if name not in base:
            return None
        default = base[name]
        if isinstance(value, list | tuple) and isinstance(default, list | tuple):  # nargs: JSON writes a list
            value, default = list(value), list(default)
        if value == default:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            if not value:
                return None  # no flag turns an option off
            parts.append(flag)
        elif isinstance(value, list):  # an option with several values: --warm-up 200 600
            parts.append(" ".join([flag, *(shlex.quote(str(v)) for v in value)]))
        else:
            parts.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(parts)


def run_commands(runs: list[dict], defaults: tuple[dict[str, Any], dict[str, Any]] | None) -> str:
    """A code block with the command of every run, or a note when one can't be written."""
    commands = [command_line(run.get("settings", {}), defaults) for run in runs]
    if not runs or any(command is None for command in commands):
        return ("\nThe settings of this run are listed under *Every number* below (they are from another version "
                "of the example, so no command is shown).\n")
    noun = "command" if len(runs) == 1 else f"commands of the {len(runs)} runs"
    return f"\nThe {noun}:\n\n.. code-block:: bash\n\n" + "".join(f"   {c}\n" for c in commands)


MNIST_TABLES = ("mnist_run.inc", "mnist_targets.inc", "mnist_samples.inc", "mnist_class_shares.inc", "mnist_ood.inc",
                "mnist_classification.inc", "mnist_metrics.inc")
"""The generated parts of the MNIST page besides ``mnist_notice.inc`` (the smoke-run warning)."""


def mnist_pages(folder: Path, example: Path) -> dict[str, str]:
    """The MNIST page's generated parts, name -> reST, from the files in ``folder``."""
    runs = load_mnist_runs(folder)
    if not runs:
        empty = dict.fromkeys(MNIST_TABLES, "(no ``metrics.json`` in ``docs/_static/mnist/`` yet)\n")
        return {**empty, "mnist_notice.inc": ".. warning::\n\n   No run has been copied into ``docs/_static/mnist/`` "
                "yet; see the end of this page for how to add one.\n"}
    pictured = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else runs[0]
    summary = run_facts(pictured)
    if len(runs) > 1:
        summary = (f"The numbers on this page come from {len(runs)} runs (seeds {', '.join(seeds(runs))}); the "
                   f"pictures from the one with seed {pictured.get('settings', {}).get('seed', '?')}. "
                   + summary.replace("The pictures and numbers on this page come from a run with", "That run had", 1))
    notice = "".join(dict.fromkeys(smoke_run_warning(run) for run in runs))
    return {
        "mnist_notice.inc": notice or ".. This run is not a smoke run: no notice.\n",
        "mnist_run.inc": summary + run_commands(runs, example_defaults(example)),
        "mnist_targets.inc": targets_table(runs),
        "mnist_samples.inc": samples_table(runs),
        "mnist_class_shares.inc": class_share_table(pictured) or "(no class shares in this ``metrics.json``)\n",
        "mnist_ood.inc": ood_table(runs),
        "mnist_classification.inc": classification_table(runs),
        "mnist_metrics.inc": metrics_to_rst(pictured),
    }


def inline_markdown(text: str) -> str:
    """Markdown inline code and bold to reST."""
    text = re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"**\1**", text)


def markdown_to_rst(markdown: str) -> str:
    """Headings, paragraphs, code fences and pipe tables of a simple Markdown file as reST."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if line.startswith("|"):
            table = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                table.append([cell.strip() for cell in lines[i].strip().strip("|").split("|")])
                i += 1
            body = [row for row in table[1:] if not all(re.fullmatch(r":?-+:?", c) for c in row)]
            out += ["", list_table([inline_markdown(c) for c in table[0]],
                                   [[inline_markdown(c) for c in row] for row in body]), ""]
            continue
        if line.startswith("```"):
            out += ["", "::", ""]
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                out.append("   " + lines[i])
                i += 1
            out.append("")
        elif line.startswith("#"):
            out += ["", f".. rubric:: {inline_markdown(line.lstrip('#').strip())}", ""]
        else:
            out.append(inline_markdown(line))
        i += 1
    return "\n".join(out) + "\n"


def write_generated_pages(root: Path, out_dir: Path) -> None:
    """Write the MNIST page's ``mnist_*.inc`` and ``benchmarks.inc`` into ``out_dir`` (each only when changed)."""
    out_dir.mkdir(exist_ok=True)
    pages = mnist_pages(root / "docs" / "_static" / "mnist", root / "examples" / "mnist_jem.py")
    results = root / "benchmarks" / "results"
    tables = sorted(results.glob("*.rst")) or sorted(results.glob("*.md"))
    if tables:
        pages["benchmarks.inc"] = "\n".join(
            path.read_text() if path.suffix == ".rst" else markdown_to_rst(path.read_text()) for path in tables
        )
    else:
        pages["benchmarks.inc"] = (".. note::\n\n   No benchmark results in ``benchmarks/results/`` yet: run the "
                                   "command above.\n")
    for name, text in pages.items():
        path = out_dir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
