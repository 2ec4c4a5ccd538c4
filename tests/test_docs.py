"""The documentation: every public symbol documented and in the API reference; the tutorials' code runs.

The docs build itself (``python3 -m sphinx -W --keep-going -b html docs docs/_build/html``)
runs in CI; these tests need neither Sphinx nor matplotlib.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import math
import os
import pkgutil
import re
import resource
import runpy
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import ebmlib

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCRIPTS = DOCS / "scripts"
MNIST_PICTURES = ("chain_evolution.png", "samples_conditional.png", "samples_unconditional.png", "energy_histogram.png",
                  "ood_hardest_cases.png", "training_curves.png")
"""The pictures examples/mnist_jem.py writes, in the order the MNIST page shows them (chains from noise first)."""


# ------------------------------------------------------------------------------------- public symbols
def public_modules() -> list[ModuleType]:
    """``ebmlib``'s direct submodules and subpackages (``ebmlib.models``, ``ebmlib.training``, ...), then ``ebmlib``."""
    names = [info.name for info in pkgutil.iter_modules(ebmlib.__path__) if not info.name.startswith("_")]
    return [*(importlib.import_module(f"ebmlib.{name}") for name in names), ebmlib]


def public_names(module: ModuleType) -> list[str]:
    """``__all__``, or else the classes and functions the module defines without a leading underscore."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, obj in vars(module).items() if not name.startswith("_")
            and (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module.__name__]


def public_symbols() -> dict[str, Any]:
    """One qualified name per public object (its subpackage's; re-exports counted once), modules left out."""
    found: dict[int, tuple[str, Any]] = {}
    for module in public_modules():
        for name in public_names(module):
            obj = getattr(module, name)
            if not inspect.ismodule(obj):
                found.setdefault(id(obj), (f"{module.__name__}.{name}", obj))
    return dict(sorted(found.values(), key=lambda item: item[0]))


PUBLIC = public_symbols()
DOCUMENTED_OBJECTS = {name: obj for name, obj in PUBLIC.items() if inspect.isclass(obj) or callable(obj)}
DATA_OBJECTS = {name: obj for name, obj in PUBLIC.items() if name not in DOCUMENTED_OBJECTS}


def attribute_docstring(obj: Any, name: str) -> str:
    """The ``\"\"\"docstring\"\"\"`` under the module-level assignment of ``name`` that defines ``obj``."""
    package = Path(ebmlib.__file__).parent
    for path in sorted(package.rglob("*.py")):
        module_name = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
        module = sys.modules.get(module_name)
        if module is None or getattr(module, name, None) is not obj:
            continue
        body = ast.parse(path.read_text()).body
        for statement, following in zip(body, body[1:], strict=False):
            targets = statement.targets if isinstance(statement, ast.Assign) else (
                [statement.target] if isinstance(statement, ast.AnnAssign) else [])
            if any(isinstance(t, ast.Name) and t.id == name for t in targets) and isinstance(following, ast.Expr) \
                    and isinstance(following.value, ast.Constant) and isinstance(following.value.value, str):
                return following.value.value
    return ""


def test_public_symbols_are_found():
    # Guards the walk above: it must see the core parts and the modules without __all__.
    assert {"ebmlib.recipes.EBM", "ebmlib.samplers.Sampler", "ebmlib.training.Trainer"} <= set(PUBLIC)
    assert len(DOCUMENTED_OBJECTS) > 30


@pytest.mark.parametrize("name", sorted(DOCUMENTED_OBJECTS))
def test_public_symbol_has_numpy_docstring_with_example(name):
    doc = inspect.cleandoc(DOCUMENTED_OBJECTS[name].__doc__ or "")
    assert doc.strip(), f"{name} has no docstring"
    assert doc.splitlines()[0].strip(), f"{name}'s docstring must start with a one-line summary"
    google = re.search(r"^(Args|Arguments|Returns|Raises|Yields|Example|Examples):\s*$", doc, re.MULTILINE)
    assert google is None, f"{name}'s docstring has a Google-style section {google and google.group(0)!r}"
    examples = re.search(r"^Examples\n-{8,}\n(.*)", doc, re.MULTILINE | re.DOTALL)
    assert examples is not None, f"{name}'s docstring has no numpy-style 'Examples' section"
    assert ">>>" in examples.group(1), f"{name}'s Examples section has no '>>>' example"


@pytest.mark.parametrize("name", sorted(DATA_OBJECTS))
def test_public_constant_has_attribute_docstring(name):
    # Constants can't carry __doc__: Sphinx reads the string literal under their assignment.
    short = name.rsplit(".", 1)[1]
    assert attribute_docstring(DATA_OBJECTS[name], short).strip(), f"{name} has no docstring under its assignment"


# ---------------------------------------------------------------------------------------- API reference
def autosummary_entries(rst: str) -> list[str]:
    """Qualified names listed in the ``autosummary`` directives of a reST text, with their current module."""
    entries, module, in_block = [], "", False
    for line in rst.splitlines():
        directive = re.match(r"\.\. (?:automodule|currentmodule|module|py:module):: (\S+)", line)
        if directive:
            module, in_block = directive.group(1), False
        elif line.startswith(".. autosummary::"):
            in_block = True
        elif in_block and line.strip() and not line.startswith("   "):
            in_block = False
        elif in_block and line.strip() and not line.strip().startswith(":"):
            name = line.strip().removeprefix("~")
            entries.append(name if name.startswith("ebmlib.") else f"{module}.{name}")
    return entries


def resolve(qualified: str) -> Any:
    """The object a dotted name refers to (the longest importable module prefix, then attributes)."""
    parts = qualified.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(qualified)


OPTIONAL_MODULES = {"ebmlib.training.lightning": "lightning"}
"""Modules of the API reference that import an optional package (the ``test`` extra installs it)."""
MISSING_OPTIONAL = {module for module, package in OPTIONAL_MODULES.items() if importlib.util.find_spec(package) is None}
REFERENCE = [entry for path in sorted(DOCS.glob("*.rst")) for entry in autosummary_entries(path.read_text())
             if not entry.startswith(tuple(MISSING_OPTIONAL))]  # left out only where that package is missing


def test_autosummary_parser_reads_the_current_module():
    text = (".. automodule:: ebmlib.models\n\n.. autosummary::\n   :toctree: generated\n\n"
            "   MLP\n   ~ebmlib.EBM\n\nText\n")
    assert autosummary_entries(text) == ["ebmlib.models.MLP", "ebmlib.EBM"]


def test_every_reference_entry_exists():
    assert REFERENCE, "docs/api.rst lists no autosummary entries"
    for entry in REFERENCE:
        resolve(entry)  # raises for a stale entry


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_symbol_is_in_api_reference(name):
    listed = [resolve(entry) for entry in REFERENCE]
    assert any(obj is PUBLIC[name] for obj in listed), f"{name} is missing from the autosummary lists in docs/api.rst"


# --------------------------------------------------------------------------------------- the pages' code
PAGES = sorted([*DOCS.glob("*.rst"), *(DOCS / "tutorials").glob("*.rst")])
"""Every page whose code a reader copies: ``docs/*.rst`` and ``docs/tutorials/*.rst``."""

PYTHON = {"python", "python3", "py"}
"""Languages run as Python. Sphinx's ``default`` (of literal ``::`` blocks, unless a ``highlight``
directive says otherwise) is Python for the code that parses as Python, plain text for the rest."""


def is_python(language: str, source: str) -> bool:
    """Whether Sphinx shows ``source``, highlighted as ``language``, as Python."""
    if language == "default":
        try:
            ast.parse(source)
        except SyntaxError:
            return False
        return True
    return language in PYTHON

NOT_RUN = re.compile(r"^(\s*)\.\. not-run:(.*)$")
"""The one marker that exempts a code block: a reST comment ``.. not-run: <reason>`` (invisible in the
built page) on the line before the block, or before it with blank lines between. Use it sparingly:
only for code that can't run on its own, and say why."""

PAGE_CPU_SECONDS = 90.0
"""CPU seconds all the code of one page may use, on one torch thread (CPU time: a busy machine waits, it
doesn't fail). Measured on a 2-core CPU kept busy by other jobs: the custom-parts tutorial 47 s, the
quickstart 30 s, the scaling tutorial (two processes under Lightning included) 19 s."""

PAGE_WALL_SECONDS = 900
"""Wall-clock seconds after which a page's code is stopped: only a hang should reach it."""

LITERALINCLUDE_OPTIONS = {"language", "caption", "start-after", "end-before", "pyobject", "lines", "dedent", "name",
                          "emphasize-lines", "linenos", "lineno-start"}
"""The ``literalinclude`` options :func:`included_code` understands (it refuses others rather than guess)."""


@dataclass
class CodeBlock:
    """One Python code block of a page, as the reader sees it."""

    page: Path
    line: int  # 1-based line of the directive (or of the paragraph ending in "::")
    source: str
    not_run: str | None = None  # the reason given by a ".. not-run:" marker


def indented(lines: list[str], start: int, indent: int) -> int:
    """The index after the block that starts at ``start``: blank lines and lines indented more than ``indent``."""
    end = start
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    return end


def block_text(lines: list[str]) -> str:
    """The lines of a directive's content or literal block, dedented, without blank lines around."""
    return textwrap.dedent("\n".join(lines)).strip("\n") + "\n"


def line_ranges(spec: str, count: int) -> list[int]:
    """0-based indices of a ``:lines:`` option such as ``1-3,5,8-``."""
    indices: list[int] = []
    for part in spec.split(","):
        low, _, high = part.strip().partition("-")
        first = int(low) if low else 1
        last = (int(high) if high else count) if "-" in part else first
        indices += range(first - 1, last)
    return indices


def included_code(path: Path, options: dict[str, str]) -> str:
    """The text a ``literalinclude`` of ``path`` with ``options`` shows, selected as Sphinx selects it."""
    unknown = set(options) - LITERALINCLUDE_OPTIONS
    if unknown:
        raise ValueError(f"literalinclude of {path.name}: options {sorted(unknown)} are not understood here")
    lines = path.read_text().splitlines()
    if "pyobject" in options:
        tree = ast.parse(path.read_text())
        found = [node for node in tree.body if getattr(node, "name", None) == options["pyobject"]]
        if not found:
            raise ValueError(f"{path.name} defines no {options['pyobject']}")
        node = found[0]
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        lines = lines[first - 1: node.end_lineno]
    if "lines" in options:
        lines = [lines[i] for i in line_ranges(options["lines"], len(lines))]
    if "start-after" in options:
        starts = [i for i, line in enumerate(lines) if options["start-after"] in line]
        if not starts:
            raise ValueError(f"{path.name} has no line with {options['start-after']!r}")
        lines = lines[starts[0] + 1:]
    if "end-before" in options:
        ends = [i for i, line in enumerate(lines) if options["end-before"] in line]
        if not ends:
            raise ValueError(f"{path.name} has no line with {options['end-before']!r}")
        lines = lines[: ends[0]]
    if "dedent" in options:
        if options["dedent"].strip():
            width = int(options["dedent"])
            lines = [line[width:] if not line[:width].strip() else line.lstrip() for line in lines]
        else:
            lines = textwrap.dedent("\n".join(lines)).splitlines()
    return "\n".join(lines).strip("\n") + "\n"


def page_code(page: Path, text: str | None = None) -> list[CodeBlock]:
    """The Python code blocks of a reST page in order: ``code-block`` (and ``code``, ``sourcecode``) in
    Python, ``literalinclude`` of Python, and literal ``::`` blocks while the page highlights Python."""
    lines = (page.read_text() if text is None else text).splitlines()
    blocks: list[CodeBlock] = []
    highlight, not_run, marker_line, i = "default", None, 0, 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        marker = NOT_RUN.match(line)
        directive = re.match(r"\s*\.\. ([\w-]+)::\s*(.*)$", line)
        if not line.strip():
            i += 1
            continue
        if marker:
            end = indented(lines, i + 1, indent)
            reason = " ".join([marker.group(2), *(part.strip() for part in lines[i + 1: end])]).strip()
            if not reason:
                raise ValueError(f"{page.name}:{i + 1}: '.. not-run:' must say why the block can't run")
            not_run, marker_line, i = reason, i + 1, end
            continue
        if directive and directive.group(1) == "highlight":
            highlight, i = directive.group(2).strip(), i + 1
            continue
        if directive and directive.group(1) in {"code-block", "code", "sourcecode", "literalinclude"}:
            start = i + 1
            options = {}
            while start < len(lines) and re.match(r"\s+:([\w-]+):(.*)$", lines[start]):
                name, value = re.match(r"\s+:([\w-]+):(.*)$", lines[start]).groups()
                options[name] = value.strip()
                start += 1
            end = indented(lines, start, indent)
            if directive.group(1) == "literalinclude":
                target = page.parent / directive.group(2).strip()
                language = options.get("language") or ("python" if target.suffix == ".py" else highlight)
                source = included_code(target, options) if language in PYTHON | {"default"} else ""
            else:
                language = directive.group(2).strip() or highlight
                source = block_text(lines[start:end])
            if is_python(language, source):
                blocks.append(CodeBlock(page, i + 1, source, not_run))
            elif not_run:
                raise ValueError(f"{page.name}:{marker_line}: '.. not-run:' before a {language} block (never run)")
            not_run, i = None, end
            continue
        if line.rstrip().endswith("::") and not directive and not line.lstrip().startswith(".. "):
            end = indented(lines, i + 1, indent)
            if end > i + 1 and is_python(highlight, block_text(lines[i + 1: end])):
                blocks.append(CodeBlock(page, i + 1, block_text(lines[i + 1: end]), not_run))
            elif not_run:
                raise ValueError(f"{page.name}:{marker_line}: '.. not-run:' before a block that is not Python")
            not_run, i = None, end
            continue
        if not_run:
            raise ValueError(f"{page.name}:{marker_line}: '.. not-run:' must come right before a code block")
        i += 1
    if not_run:
        raise ValueError(f"{page.name}:{marker_line}: '.. not-run:' must come right before a code block")
    return blocks


SCRIPT_NAME = re.compile(r"# ([\w.-]+\.py)\n")
"""A block that starts with the comment ``# train.py`` is a script of its own, for the reader to save as it says."""


def page_scripts(page: Path) -> dict[str, str]:
    """The Python blocks of ``page`` that run, as scripts, name -> source, in the order the page shows them.

    A block that starts with a ``# <name>.py`` comment is a script of its own. The other blocks, in order,
    are one script named after the page: what a reader who pastes them into one file gets. Each block is
    under a comment naming its line on the page.
    """
    scripts: dict[str, list[str]] = {}
    shown = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page.name
    for block in page_code(page):
        if block.not_run:
            continue
        named = SCRIPT_NAME.match(block.source)
        name = named.group(1) if named else f"{page.stem}.py"
        if named and name in scripts:
            raise ValueError(f"{page.name}:{block.line}: a second script named {name}")
        scripts.setdefault(name, []).append(f"# {shown}, the block at line {block.line}\n"
                                            f"{block.source}")
    return {name: "\n".join(blocks) for name, blocks in scripts.items()}


def run_page(name: str, folder: Path) -> tuple[list[subprocess.CompletedProcess[str]], float]:
    """Run the scripts of ``docs/<name>`` in ``folder`` (files they write stay there), each in a process of its
    own, as ``python <script>``; the finished processes and the CPU seconds they and their children used."""
    # One torch thread: small models run fastest so, and CPU time then measures the work, not threads
    # spinning on shared cores. PYTHONPATH: the ebmlib of this checkout.
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]), "MPLBACKEND": "Agg"}
    finished = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for script, source in page_scripts(DOCS / name).items():
        (folder / script).write_text(source)
        finished.append(subprocess.run([sys.executable, script], cwd=folder, env=environment, capture_output=True,
                                       text=True, timeout=PAGE_WALL_SECONDS))
        if finished[-1].returncode != 0:
            break
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return finished, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


PAGES_WITH_CODE = [page.relative_to(DOCS).as_posix() for page in PAGES
                   if any(not block.not_run for block in page_code(page))]


def test_page_code_is_found_on_the_pages_that_show_code():
    assert {"quickstart.rst", "concepts.rst", "tutorials/custom_parts.rst", "tutorials/diagnosing.rst"} <= set(
        PAGES_WITH_CODE)


@pytest.mark.parametrize("name", PAGES_WITH_CODE)
def test_page_code_runs_as_shown_with_its_imports(name, tmp_path):
    sources = "\n".join(page_scripts(DOCS / name).values())
    for package in ("lightning", "tensorboard", "matplotlib"):  # optional: the test extra installs each
        imported = re.search(rf"^\s*(?:import|from) {package}\b", sources, flags=re.M)
        if imported and importlib.util.find_spec(package) is None:
            pytest.skip(f"the code of {name} imports {package}: pip install -e '.[test]'")
    finished, cpu_seconds = run_page(name, tmp_path)
    for process in finished:
        assert process.returncode == 0, f"the code of {name} fails ({process.args[-1]}):\n{process.stderr[-3000:]}"
    assert cpu_seconds < PAGE_CPU_SECONDS, (
        f"the code of {name} took {cpu_seconds:.0f} CPU seconds; keep a page's code within "
        f"{PAGE_CPU_SECONDS:g} s (fewer steps), or the tests get slow")


def test_page_code_reader_finds_python_blocks_and_honours_markers(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import math\n# [a-start]\nradius = 2.0\n# [a-end]\n\ndef area(r):\n    return math.pi * r**2\n"
                      "\nif __name__ == '__main__':\n    # [b-start]\n    print(area(radius))\n    # [b-end]\n")
    page = tmp_path / "page.rst"
    text = """Title
=====

.. code-block:: python

   x = 1

.. code-block:: bash

   echo not python

A literal block::

   y = x + 1

A command, which Sphinx shows as text::

   pip install -e ".[vision]"

.. not-run: needs a GPU
   that the tests don't have.

.. code-block:: python
   :caption: on CUDA

   z = torch.ones(1, device="cuda")

.. literalinclude:: script.py
   :language: python
   :start-after: # [a-start]
   :end-before: # [a-end]

.. literalinclude:: script.py
   :pyobject: area

.. literalinclude:: script.py
   :start-after: # [b-start]
   :end-before: # [b-end]
   :dedent: 4

.. highlight:: text

Output::

   not python either
"""
    blocks = page_code(page, text)
    assert [block.source for block in blocks] == [
        "x = 1\n", "y = x + 1\n", 'z = torch.ones(1, device="cuda")\n', "radius = 2.0\n",
        "def area(r):\n    return math.pi * r**2\n", "print(area(radius))\n"]
    assert [block.not_run for block in blocks] == [None, None, "needs a GPU that the tests don't have.", None, None,
                                                   None]
    assert [block.line for block in blocks] == [4, 12, 23, 28, 33, 36]
    page.write_text(text + "\n.. code-block:: python\n\n   # train.py\n   import math\n")
    assert list(page_scripts(page)) == ["page.py", "train.py"]
    assert page_scripts(page)["train.py"].endswith("# train.py\nimport math\n")
    with pytest.raises(ValueError, match="must say why"):
        page_code(page, ".. not-run:\n\n.. code-block:: python\n\n   x = 1\n")
    with pytest.raises(ValueError, match="right before a code block"):
        page_code(page, ".. not-run: stale\n\nA paragraph.\n\n.. code-block:: python\n\n   x = 1\n")
    with pytest.raises(ValueError, match="not understood"):
        page_code(page, ".. literalinclude:: script.py\n   :diff: other.py\n")


def load_script(name: str) -> ModuleType:
    """Import ``docs/scripts/<name>.py`` as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"docs_scripts_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_is_included_verbatim_and_short():
    page = (DOCS / "quickstart.rst").read_text()
    assert ".. literalinclude:: scripts/quickstart.py" in page
    assert len((SCRIPTS / "quickstart.py").read_text().splitlines()) < 30


def test_quickstart_runs_as_written_and_learns_the_eight_gaussians():
    result = runpy.run_path(str(SCRIPTS / "quickstart.py"))
    samples = result["samples"]
    assert samples.shape == (2000, 2) and torch.isfinite(samples).all()
    angles = torch.arange(8) * (2 * math.pi / 8)
    centres = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)  # eight_gaussians: radius 2, std 0.1
    distance, mode = torch.cdist(samples, centres).min(dim=1)
    near = distance < 0.5
    # Fixed seeds. Uniform noise on the buffer's box [-3, 3]^2 puts 17% of points within 0.5 of a
    # centre; the trained run puts 86% there and at least 5% on every mode (in expectation 12.5%).
    assert float(near.float().mean()) > 0.6
    assert float((torch.bincount(mode[near], minlength=8) / len(samples)).min()) > 0.03
    assert 0 < result["trainer"].history[-1]["cd/energy_gap"] < 10


def test_custom_energy_model_follows_the_interface():
    tutorial = load_script("custom_parts")
    model = tutorial.FourierEnergy(n_frequencies=8)
    assert model(torch.randn(5, 2)).shape == (5,)
    assert "frequencies" in model.state_dict()  # fixed state is saved, and not trained
    assert all(p is not model.frequencies for p in model.parameters())


def test_reflection_keeps_chains_in_the_box_and_leaves_inner_points_alone():
    sampler = load_script("custom_parts").ReflectedLangevin(step_size=0.01, low=-2.0, high=2.0)
    inside = torch.tensor([[-1.5, 0.0], [1.99, -1.99]])
    torch.testing.assert_close(sampler.reflect(inside), inside)
    torch.testing.assert_close(sampler.reflect(torch.tensor([[2.5, -2.25], [6.5, 10.0]])),
                               torch.tensor([[1.5, -1.75], [-1.5, 2.0]]))  # 10 -> 2 - 8 -> -2 + 4


class ZeroEnergy(ebmlib.EnergyModel):
    def energy(self, x, y=None):
        return 0.0 * x.sum(dim=1)


def test_reflected_langevin_samples_the_uniform_law_of_a_flat_energy():
    # A flat energy in the box [-2, 2]^2: the uniform law, mean 0 and variance 16/12 per coordinate.
    # 4000 chains from 0 with noise std 1 per step mix in 300 steps; standard errors of the mean
    # and variance are about 0.02 and 0.013, so the tolerances are about 4 standard errors.
    sampler = load_script("custom_parts").ReflectedLangevin(step_size=0.5, low=-2.0, high=2.0, n_steps=300)
    x = sampler.sample(ZeroEnergy(), torch.zeros(4000, 2), generator=torch.Generator().manual_seed(0))
    assert float(x.abs().max()) <= 2.0
    torch.testing.assert_close(x.mean(0), torch.zeros(2), atol=0.08, rtol=0)
    torch.testing.assert_close(x.var(0), torch.full((2,), 16 / 12), atol=0.06, rtol=0)


def test_custom_parts_tutorial_trains_with_the_library_trainer():
    tutorial = load_script("custom_parts")
    recipe, trainer = tutorial.train(n_batches=200)
    assert trainer.step == 200 and isinstance(recipe.sampler, tutorial.ReflectedLangevin)
    assert float(recipe.buffer.samples.abs().max()) <= 2.0  # the buffer's chains stayed in the box
    x = 4 * torch.rand(4000, 2, generator=torch.Generator().manual_seed(1)) - 2
    on_board = ((x + 2).floor().long().sum(dim=1) % 2) == 0  # the checkerboard's filled squares
    with torch.no_grad():
        energy = recipe.model(x)
    # Fixed seeds; after 200 steps the empty squares' mean energy is ~14 above the filled ones'.
    assert float(energy[~on_board].mean() - energy[on_board].mean()) > 2.0


def test_diagnosing_runaway_callback_stops_the_unregularised_run_only():
    diagnosing = load_script("figure_diagnostics")
    with pytest.raises(FloatingPointError, match="diverged"):
        diagnosing.run(**diagnosing.RUNS["no energy regularisation"], n_batches=150,
                       callbacks=(diagnosing.stop_on_runaway(),))
    history, _ = diagnosing.run(**diagnosing.RUNS["healthy (quickstart)"], n_batches=150,
                                callbacks=(diagnosing.stop_on_runaway(),))
    assert all(abs(row["cd/energy_gap"]) < 10 for row in history)


def test_pages_include_existing_code_and_pictures():
    for page in DOCS.rglob("*.rst"):
        if "generated" in page.parts or "_build" in page.parts:
            continue
        text = page.read_text()
        for kind, target in re.findall(r"^\.\. (literalinclude|image|figure|include):: (\S+)", text, re.MULTILINE):
            if "_generated" not in target:  # written by the docs build itself
                assert (page.parent / target).resolve().is_file(), f"{page.name}: {kind} {target} does not exist"
        for marker in re.findall(r":(?:start-after|end-before): (.+)", text):
            included = re.findall(r"^\.\. literalinclude:: (\S+)", text, re.MULTILINE)
            assert any(marker in (page.parent / f).read_text() for f in included), f"{page.name}: marker {marker}"


def test_mnist_page_shows_the_example_outputs():
    page = (DOCS / "tutorials" / "mnist_jem.rst").read_text()
    missing = [name for name in MNIST_PICTURES if f"_static/mnist/{name}" not in page]
    assert not missing, f"the MNIST page lacks {missing}"
    positions = [page.find(f"_static/mnist/{name}") for name in MNIST_PICTURES]
    assert positions == sorted(positions), "the MNIST page shows the chains from noise first, then the others in order"
    generated = load_script("rst_tables").mnist_pages(DOCS / "_static" / "mnist", ROOT / "examples" / "mnist_jem.py")
    for name in generated:
        assert f".. include:: ../_generated/{name}" in page, f"the MNIST page does not include {name}"


# ----------------------------------------------------------------------------------- the docs' helpers
def test_copy_mnist_run_copies_every_output_and_names_missing_ones(tmp_path):
    copy = load_script("copy_mnist_run")
    run = tmp_path / "run"
    run.mkdir()
    for name in copy.FILES:
        (run / name).write_text(name)
    copied = copy.copy_run(run, tmp_path / "static")
    assert sorted(p.name for p in copied) == sorted(copy.FILES) and set(copy.FILES) >= {*MNIST_PICTURES}
    assert (tmp_path / "static" / "samples_unconditional.png").read_text() == "samples_unconditional.png"
    (run / "chain_evolution.png").unlink()
    with pytest.raises(FileNotFoundError, match="chain_evolution.png"):
        copy.copy_run(run, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()  # nothing copied when a file is missing


def test_metrics_become_tables_and_a_quick_run_is_flagged():
    tables = load_script("rst_tables")
    metrics = {"test_accuracy": 0.98765, "ood_auroc": {"noise/energy": 1.0}, "steps": 12,
               "settings": {"quick": True, "lr": 0.001}}
    text = tables.metrics_to_rst(metrics)
    assert ".. list-table:: summary" in text and "   * - ``test_accuracy``\n     - ``0.9877``" in text
    assert ".. list-table:: ood_auroc" in text and "``noise/energy``" in text and "``quick``" in text
    assert ".. warning::" in tables.run_summary(metrics)
    assert ".. warning::" not in tables.run_summary({**metrics, "settings": {"quick": False}})
    json.dumps(metrics)  # the helper takes what metrics.json holds


def test_copy_mnist_runs_keeps_every_seeds_metrics_and_removes_an_older_copy(tmp_path):
    copy = load_script("copy_mnist_run")
    static = tmp_path / "static"
    static.mkdir()
    (static / "samples_fresh.png").write_text("a picture the example no longer draws")
    (static / "metrics_run4.json").write_text("{}")
    runs = [tmp_path / f"seed{seed}" for seed in range(3)]
    for seed, run in enumerate(runs):
        run.mkdir()
        for name in copy.FILES:
            (run / name).write_text(f"{name} of seed {seed}")
    copy.copy_runs(runs, static)
    assert sorted(p.name for p in static.iterdir()) == sorted(
        [*copy.FILES, "metrics_run1.json", "metrics_run2.json", "metrics_run3.json"])
    assert (static / "chain_evolution.png").read_text() == "chain_evolution.png of seed 0"  # the first run's pictures
    assert (static / "metrics_run3.json").read_text() == "metrics.json of seed 2"
    copy.copy_runs(runs[:1], static)  # one run again: the per-run metrics go
    assert sorted(p.name for p in static.iterdir()) == sorted(copy.FILES)
    (runs[2] / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="seed2/metrics.json"):
        copy.copy_runs(runs, static)
    assert (static / "metrics.json").read_text() == "metrics.json of seed 0"  # nothing changed


def mnist_metrics(seed: int, recognition: float) -> dict[str, Any]:
    """What examples/mnist_jem.py writes, cut down to the names the MNIST page's tables read."""
    metrics = {
        "test_accuracy": 0.985, "test_expected_calibration_error": 0.031, "judge_test_accuracy": 0.99,
        "ood_auroc/uniform_noise/energy": 1.0, "ood_auroc/uniform_noise/max_softmax": 0.97,
        "ood_auroc/inverted/energy": 0.42, "ood_auroc/inverted/max_softmax": 0.8,
        "uniform_noise/frechet_distance": 1165.0, "uniform_noise/mean_energy": 3.0, "test_images/mean_energy": -9.0,
        "from_noise/conditional_recognition": recognition, "from_noise/frechet_distance": 93.2,
        "from_noise/frechet_distance_ratio": 0.08, "from_noise/class_share_min": 0.061,
        **{f"from_noise/class_share/{k}": 0.1 for k in range(10)},
        "from_class_gaussians/conditional_recognition": 0.99, "from_class_gaussians/frechet_distance_ratio": 0.05,
        "buffer/conditional_recognition": 0.97, "buffer/class_share_min": 0.02,
        "steps": 1000, "epochs": 8, "training_seconds": 450.0, "wall_seconds": 570.0, "device": "cpu",
        "settings": {"dataset": "mnist", "data_dir": "data", "seed": seed, "quick": False},
    }
    return metrics


def test_mnist_tables_read_the_examples_flat_metric_names():
    tables = load_script("rst_tables")
    runs = [mnist_metrics(0, 0.934), mnist_metrics(1, 0.871)]
    targets = tables.targets_table(runs)
    assert "   * - measure\n     - target\n     - seed 0\n     - seed 1\n" in targets
    assert "     - >= 0.9\n     - 0.934 (pass)\n     - 0.871 (**fail**)\n" in targets
    assert "energy-score OOD AUROC, inverted\n     - >= 0.95\n     - 0.420 (**fail**)" in targets
    assert "- 9.5 minutes on cpu (pass)" in targets  # the wall time, from wall_seconds
    samples = tables.samples_table(runs)
    assert samples.index("   * - from noise\n") < samples.index("   * - from class Gaussians\n") \
        < samples.index("   * - the replay buffer's chains\n")
    assert ("   * - from noise\n     - | 0\n       | 1\n     - | 0.934\n       | 0.871\n     - | 93.2\n       | 93.2\n"
            "     - | 0.080\n       | 0.080\n") in samples  # a seed column, then one line per run in every cell
    assert "Each cell lists the runs from top to bottom: seed 0, 1." in samples
    ood = tables.ood_table(runs[:1])
    assert "     - ``energy``\n     - ``max_softmax``\n" in ood and "   * - inverted\n     - 0.420\n     - 0.800" in ood
    shares = tables.class_share_table(runs[0])
    assert "     - 9\n   * - from noise\n" + "     - 0.100\n" * 10 in shares
    classification = tables.classification_table(runs)
    assert "     - seed 0\n     - seed 1\n" in classification and "   * - test accuracy\n     - 0.985\n     - 0.985" \
        in classification


def test_mnist_page_shows_the_command_of_each_run():
    tables = load_script("rst_tables")
    defaults = tables.example_defaults(ROOT / "examples" / "mnist_jem.py")
    assert defaults is not None, "docs/scripts/rst_tables.py can no longer read examples/mnist_jem.py's defaults"
    settings = {**defaults[0], "data_dir": "data", "seed": 2, "out": "runs/seed 2"}
    assert tables.command_line(settings, defaults) == (
        "python3 examples/mnist_jem.py --data-dir data --out 'runs/seed 2' --seed 2")
    assert tables.command_line({**defaults[1], "resume": True}, defaults) == "python3 examples/mnist_jem.py --quick"
    assert tables.command_line({**defaults[0], "generation_steps": 60}, defaults) is None  # an older example
    # metrics.json writes an option of several values as a list: the default's list adds no flag
    assert tables.command_line({**defaults[0], "warm_up": list(defaults[0]["warm_up"])}, defaults) == (
        "python3 examples/mnist_jem.py")
    assert tables.command_line({**defaults[0], "warm_up": [100, 300]}, defaults) == (
        "python3 examples/mnist_jem.py --warm-up 100 300")
    assert "no command is shown" in tables.run_commands([{"settings": {"epochs": 3}}], defaults)


def extras() -> dict[str, str]:
    """``[project.optional-dependencies]`` of pyproject.toml, name -> its line (read without tomllib, for 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]\n", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r"^([\w-]+) = (\[.*\])$", section, re.MULTILINE))


def test_the_install_table_lists_every_extra_with_what_it_adds():
    assert {"vision", "test", "docs", "tensorboard", "lightning", "dev"} <= set(extras())
    index = (DOCS / "index.rst").read_text()
    rows = dict(re.findall(r"^   \* - ``([\w-]+)``\n     - (.+\n(?:       .+\n)*)", index, re.MULTILINE))
    assert set(rows) == set(extras()), "docs/index.rst's install table must list every extra of pyproject.toml"
    for name, requirements in extras().items():
        for package in re.findall(r'"([A-Za-z][\w-]*)', requirements):
            shown = package.split("[")[0] if package != "ebmlib" else None
            if shown:
                assert shown in rows[name], f"the {name} extra adds {shown}; the install table doesn't say so"
        for included in re.findall(r"ebmlib\[([\w,]+)\]", requirements):
            for other in included.split(","):
                assert f"``{other}``" in rows[name], f"the {name} extra includes {other}; the table doesn't say so"


def test_the_docs_name_no_folder_of_the_machine_that_built_them():
    # Data come from the package (ebmlib.data.SUBSETS_ROOT) or a folder the reader names (--data-dir DIR).
    sources = [path for path in DOCS.rglob("*") if path.suffix in {".rst", ".py", ".json", ".md", ".txt"}
               and not {"_build", "generated", "_generated", "auto_examples"} & set(path.relative_to(DOCS).parts)]
    assert any(path.name == "metrics.json" for path in sources)
    for path in sources:
        text = path.read_text()
        for folder in ("../shared", "/shared/", "/work/", "/tmp/", "/home/"):
            assert folder not in text, f"{path.relative_to(ROOT)} names {folder!r}, a folder of one machine"


def test_the_committed_mnist_run_fills_every_table():
    # docs/_static/mnist/ holds a run of the current example (copy_mnist_run.py): every target has its
    # measured value, every start and the buffer their row, and a smoke run says so on the page.
    tables = load_script("rst_tables")
    folder = DOCS / "_static" / "mnist"
    runs = tables.load_mnist_runs(folder)
    assert runs and all(name in run for run in runs for name in tables.TARGETS)
    assert {"from_noise", "buffer"} <= set(tables.sample_sets(runs))
    pages = tables.mnist_pages(folder, ROOT / "examples" / "mnist_jem.py")
    assert tables.MISSING not in pages["mnist_targets.inc"]
    quick = any(run.get("settings", {}).get("quick") for run in runs)
    assert (".. warning::" in pages["mnist_notice.inc"]) == quick


def test_markdown_benchmark_tables_become_list_tables():
    tables = load_script("rst_tables")
    markdown = ("# Throughput on a CPU\n\n- command: `python3 bench.py`\n\n"
                "| variant | ms |\n|---|---:|\n| bare | 1.5 |\n")
    text = tables.markdown_to_rst(markdown)
    assert ".. rubric:: Throughput on a CPU" in text and "- command: ``python3 bench.py``" in text
    assert ".. list-table::" in text and "   * - variant\n     - ms" in text and "   * - bare\n     - 1.5" in text
    assert "---" not in text


def test_readme_example_runs_as_written_and_learns():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    from ebmlib.data import sample_toy
    from ebmlib.evaluation import mmd

    target = sample_toy("eight_gaussians", 1000, torch.Generator().manual_seed(1))
    # untrained models score ~0.29 (see tests/test_recipes.py); measured after training: ~0.05
    assert float(mmd(namespace["samples"], target)) < 0.1


def test_the_readme_gives_two_commands_that_ci_reads_and_names_no_machine_path():
    spec = importlib.util.spec_from_file_location("readme_commands", ROOT / ".ci" / "readme_commands.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (ROOT / "README.md").read_text()
    main_job, tests = module.readme_commands(readme)
    assert main_job == 'python3 -m pip install -e ".[vision]" && python3 examples/mnist_jem.py'  # no data flag
    assert tests == 'python3 -m pip install -e ".[test]" && python3 -m pytest -q'
    assert "shared" not in readme and "/work/" not in readme and "issue" not in readme.lower()
    with pytest.raises(ValueError, match="must hold two commands"):
        module.readme_commands("## The two commands\n\n```bash\npython3 a.py\n```\n")
