"""Turn the run's outputs (MNIST ``metrics.json``, benchmark Markdown tables) into reST.

``docs/conf.py`` calls :func:`write_generated_pages` at the start of every build, so
the pages always show the files currently in ``docs/_static/mnist/`` and
``benchmarks/results/``; the ``.inc`` files it writes to ``docs/_generated/`` are
included by the pages and never edited by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path


def list_table(header: list[str], rows: list[list[str]], title: str = "") -> str:
    """A reST ``list-table`` with one header row."""
    lines = [f".. list-table:: {title}".rstrip(), "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append("   * - " + (row[0] or " "))
        lines += ["     - " + (cell or " ") for cell in row[1:]]
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
    """One table per top-level section of ``metrics.json`` (top-level numbers in a first table)."""
    scalars = [[f"``{k}``", format_value(v)] for k, v in metrics.items() if not isinstance(v, dict)]
    parts = [list_table(["Metric", "Value"], scalars, "summary")] if scalars else []
    for section, value in metrics.items():
        if isinstance(value, dict):
            rows = [[f"``{k}``", format_value(v)] for k, v in flatten(value)]
            parts.append(list_table(["Name", "Value"], rows, section) if rows else "")
    return "\n".join(parts)


def duration(seconds: float) -> str:
    """``"42 s"`` below two minutes, ``"12.5 minutes"`` above."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} minutes"


def run_summary(metrics: dict) -> str:
    """A sentence on where the MNIST figures come from, and a warning for a ``--quick`` smoke run."""
    data = metrics.get("data", {})
    settings = metrics.get("settings", {})
    facts = [f"{metrics['steps']} training steps" if "steps" in metrics else "",
             f"{data['train_images']} training and {data.get('test_images', '?')} test images"
             if "train_images" in data else "",
             f"device ``{metrics['device']}``" if "device" in metrics else "",
             duration(metrics["training_seconds"]) + " of training" if "training_seconds" in metrics else ""]
    text = "The pictures and numbers on this page come from a run with " + ", ".join(f for f in facts if f) + ".\n"
    if settings.get("quick"):
        text += ("\n.. warning::\n\n   This is a ``--quick`` smoke run (a few steps of a tiny network on a small "
                 "subset): its pictures and numbers show the format of the outputs, not what JEM learns. Replace "
                 "them with a full run as described at the end of this page.\n")
    return text


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
    """Write ``mnist_run.inc``, ``mnist_metrics.inc`` and ``benchmarks.inc`` into ``out_dir`` (when changed)."""
    out_dir.mkdir(exist_ok=True)
    metrics = root / "docs" / "_static" / "mnist" / "metrics.json"
    if metrics.exists():
        loaded = json.loads(metrics.read_text())
        run, mnist = run_summary(loaded), metrics_to_rst(loaded)
    else:
        run = ".. warning::\n\n   No run has been copied into ``docs/_static/mnist/`` yet; see below how to add one.\n"
        mnist = "(no ``metrics.json`` yet)\n"
    results = root / "benchmarks" / "results"
    tables = sorted(results.glob("*.rst")) or sorted(results.glob("*.md"))
    if tables:
        bench = "\n".join(
            path.read_text() if path.suffix == ".rst" else markdown_to_rst(path.read_text()) for path in tables
        )
    else:
        bench = ".. note::\n\n   No benchmark results in ``benchmarks/results/`` yet: run the command above.\n"
    for name, text in {"mnist_run.inc": run, "mnist_metrics.inc": mnist, "benchmarks.inc": bench}.items():
        path = out_dir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
