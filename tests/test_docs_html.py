"""The docs as a reader sees them: the checker of the built HTML, the bundled MathJax, no furo error boxes.

CI builds the docs and runs ``docs/scripts/check_html.py`` on the result; these tests check the
checker itself on crafted pages, and the sources it relies on, without building anything.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
import runpy
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def load_checker() -> ModuleType:
    """Import ``docs/scripts/check_html.py`` (the docs scripts are not a package)."""
    spec = importlib.util.spec_from_file_location("docs_scripts_check_html", DOCS / "scripts" / "check_html.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def page(head: str = "", body: str = "") -> str:
    return f"<!doctype html>\n<html><head>{head}</head><body><article>{body}</article></body></html>\n"


LOCAL_MATHJAX = '<script defer="defer" src="../_static/mathjax/tex-svg-full.js?v=1a2b"></script>'
FORMULA = '<p>A density <span class="math notranslate nohighlight">\\(p(x) \\propto e^{-E(x)}\\)</span>.</p>'

BAD_PAGES = {
    "system_message.html": (page(body='<aside class="system-message"><p class="system-message-title">'
                                      'System Message: ERROR/3</p><p>Unknown directive type "foo".</p></aside>'),
                            "docutils system message"),
    "problematic.html": (page(body='<p><a class="problematic" href="#id1">`broken`_</a></p>'), "'problematic' markup"),
    "contents.html": (page(body='<nav class="contents local" id="on-this-page"><ul><li>A</li></ul></nav>'),
                      "red ERROR box"),
    "math_without_mathjax.html": (page(body=FORMULA), "raw \\(...\\) LaTeX"),
    "remote_mathjax.html": (page(head='<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-svg.js">'
                                      "</script>", body=FORMULA), "from the network", "raw \\(...\\) LaTeX"),
    "protocol_relative_css.html": (page(head='<link rel="stylesheet" href="//fonts.example.org/a.css">'),
                                   "from the network"),
    "missing_mathjax_file.html": (page(head='<script src="../_static/mathjax/gone.js"></script>', body=FORMULA),
                                  "is not in the build", "raw \\(...\\) LaTeX"),
    "raw_literal.html": (page(body="<p>Must be finite (<code>x</code>) and\n``n_steps`` an integer.</p>"),
                         "reST markup shown as text: ') and ``n_steps`` an integer.'"),
    "raw_role.html": (page(body="<dd><p>See :class:`Sampler`.</p></dd>"), "reST markup shown as text"),
    "missing_image.html": (page(body='<img alt="x" src="../_images/nowhere.png">'), "is not in the build"),
    # napoleon's escape of "*event_shape" inside a literal reaches the page with its backslash.
    "escaped_star.html": (page(body='<dd><p>Samples, shape <code class="docutils literal"><span class="pre">(n,</span> '
                                   '<span class="pre">\\*event_shape)</span></code>.</p></dd>'),
                          "reST escape shown as text: '\\\\*event_shape)'"),
    "escaped_underscore.html": (page(body="<p>See the n\\_steps argument.</p>"), "reST escape shown as text"),
    # :func:`jem_loss` ``()``: the role writes "jem_loss()", the literal another "()".
    "doubled_parentheses.html": (page(body='<p>The loss is <a class="reference internal" href="#j"><code class="xref '
                                           'py py-func docutils literal"><span class="pre">jem_loss()</span></code></a>'
                                           ' <code class="docutils literal"><span class="pre">()</span></code>: '
                                           'cross-entropy.</p>'),
                                 "doubled parentheses: 'jem_loss() ()'"),
    "doubled_parentheses_in_text.html": (page(body="<li><p>call fit()() once</p></li>"),
                                         "doubled parentheses: 'fit()()'"),
}


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A crafted build folder: a good page in ``pages/`` that uses every local asset, and ``_static``."""
    (tmp_path / "_static" / "mathjax").mkdir(parents=True)
    (tmp_path / "_static" / "mathjax" / "tex-svg-full.js").write_text("/* MathJax */")
    (tmp_path / "_static" / "furo.css").write_text("body {}")
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "figure.png").write_bytes(b"\x89PNG")
    (tmp_path / "pages").mkdir()
    good = page(head=LOCAL_MATHJAX + '<link rel="stylesheet" href="../_static/furo.css?v=9">',
                body=FORMULA + '<img src="../_images/figure.png"><img src="data:image/png;base64,AAAA">'
                '<nav class="contents local this-will-duplicate-information-and-it-is-still-useful-here"></nav>'
                '<div class="admonition error"><p>An author\'s own error admonition is content.</p></div>'
                '<p>A link out is fine: <a href="https://pytorch.org">PyTorch</a>.</p>'
                '<pre>reST in code is shown as written: ``x`` and :class:`y`</pre>'
                '<p>Inline too: <code class="literal"><span>``x``</span></code> then text.</p>'
                '<pre>make()() and print(\\*args)</pre><p>Stars: <code>*args</code>, 2 * 3.</p>'
                '<p>Calls in a row: <code>a()</code> then <code>b()</code>; and f()</p><p>() opens a paragraph.</p>'
                '<p><code>score()</code> (<span class="math">\\(-\\nabla_x E\\)</span>) is the score.</p>'
                '<div class="math notranslate nohighlight">\\[\\|x\\|_2 = f()()\\]</div>')
    (tmp_path / "pages" / "good.html").write_text(good)
    return tmp_path


def test_check_html_passes_a_good_page(built):
    checker = load_checker()
    report = checker.check_tree(built)
    assert report.problems == [] and report.pages == 1 and report.formulas == 3
    assert checker.main([str(built)]) == 0


@pytest.mark.parametrize("name", sorted(BAD_PAGES))
def test_check_html_flags_each_defect_once(built, name):
    checker = load_checker()
    text, *messages = BAD_PAGES[name]
    (built / "pages" / name).write_text(text)
    problems = checker.check_tree(built).problems
    assert len(problems) == len(messages), problems
    for problem, message in zip(problems, messages, strict=True):
        assert problem.startswith(f"pages/{name}: ") and message in problem
    assert checker.main([str(built)]) == 1


def test_check_html_skips_static_files_and_refuses_an_empty_folder(built, tmp_path_factory):
    checker = load_checker()
    (built / "_static" / "vendor.html").write_text(page(body=FORMULA))  # a vendored file, not a page
    assert checker.check_tree(built).problems == []
    empty = tmp_path_factory.mktemp("empty")
    assert "no HTML pages found" in checker.check_tree(empty).problems[0]
    assert checker.main([str(empty)]) == 1


# ------------------------------------------------------------------------------------ the sources
def conf_value(name: str) -> str:
    """The string literal assigned to ``name`` at the top level of docs/conf.py."""
    for statement in ast.parse((DOCS / "conf.py").read_text()).body:
        if isinstance(statement, ast.Assign) and any(getattr(t, "id", None) == name for t in statement.targets):
            assert isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str)
            return statement.value.value
    raise AssertionError(f"docs/conf.py assigns no {name}")


def test_mathjax_is_bundled_with_its_license_and_checksum():
    path = conf_value("mathjax_path")
    assert not re.match(r"^(https?:)?//", path), f"mathjax_path {path!r} is remote; formulas would need a network"
    bundle = DOCS / "_static" / path
    assert bundle.is_file(), f"mathjax_path {path!r} is not a file under docs/_static"
    notice = (bundle.parent / "NOTICE").read_text()
    assert "Apache License 2.0" in notice and "Apache License" in (bundle.parent / "LICENSE").read_text()
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() in notice, "the NOTICE's SHA-256 is not the bundle's"


def test_no_page_adds_a_table_of_contents_furo_covers_with_an_error():
    for source in DOCS.rglob("*.rst"):
        if {"generated", "_build", "auto_examples"} & set(source.parts):
            continue
        for match in re.finditer(r"^\.\. contents::.*\n((?:   .*\n)*)", source.read_text(), re.MULTILINE):
            assert "this-will-duplicate-information-and-it-is-still-useful-here" in match.group(1), \
                f"{source.relative_to(ROOT)}: furo shows a red ERROR box over '.. contents::'; remove it"


# ------------------------------------------------------------------------------ autodoc's hooks
def conf_functions() -> dict[str, object]:
    """docs/conf.py's top-level names (it imports ebmlib and the docs scripts, not Sphinx)."""
    return runpy.run_path(str(DOCS / "conf.py"))


def documented_objects() -> list[tuple[str, object]]:
    """Every class and function ebmlib's modules define, and their own methods and properties."""
    import importlib
    import inspect
    import pkgutil

    import ebmlib

    found: dict[int, tuple[str, object]] = {}
    for info in pkgutil.walk_packages(ebmlib.__path__, "ebmlib."):
        if info.name == "ebmlib.training.lightning" and importlib.util.find_spec("lightning") is None:
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            found.setdefault(id(obj), (f"{module.__name__}.{name}", obj))
            members = vars(obj).items() if inspect.isclass(obj) else ()
            for member_name, member in members:
                member = getattr(member, "__func__", getattr(member, "fget", member))
                if inspect.isfunction(member) and member.__doc__:
                    found.setdefault(id(member), (f"{module.__name__}.{name}.{member_name}", member))
    return sorted(found.values(), key=lambda item: item[0])


def test_no_docstring_shows_an_escaped_star_in_a_literal():
    # napoleon escapes "*event_shape" in an unnamed Returns line ("Tensor, shape ``(n, *event_shape)``")
    # as if it were *args; the hook in docs/conf.py takes the backslash out of literals again.
    pytest.importorskip("sphinx")
    import inspect

    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import NumpyDocstring

    hook = conf_functions()["unescape_literal_stars"]
    config = Config(napoleon_google_docstring=False, napoleon_numpy_docstring=True, napoleon_use_rtype=False,
                    napoleon_use_param=False, napoleon_use_keyword=False)
    escaped, shown = [], []
    for name, obj in documented_objects():
        lines = NumpyDocstring(inspect.getdoc(obj) or "", config, what="class" if inspect.isclass(obj) else "function",
                               name=name, obj=obj).lines()
        escaped += [name for line in lines if re.search(r"``[^`]*\\\*[^`]*``", line)]
        hook(None, "function", name, obj, {}, lines)
        shown += [f"{name}: {line.strip()}" for line in lines if re.search(r"``[^`]*\\\*[^`]*``", line)]
    assert escaped, "napoleon no longer escapes stars in literals: the hook in docs/conf.py can go"
    assert not shown, shown
    lines = [":returns: Tensor, shape ``(n, \\*event_shape)`` -- samples", ":Parameters: **\\*inputs** (LossInput)"]
    hook(None, "function", "f", None, {}, lines)
    assert lines == [":returns: Tensor, shape ``(n, *event_shape)`` -- samples",  # in a literal: unescaped
                     ":Parameters: **\\*inputs** (LossInput)"]  # a parameter's name outside one: left alone


def test_model_pages_leave_out_what_torch_defines():
    from ebmlib.models import MLP, EnergyModel, SwishCNN

    skip = conf_functions()["skip_torch_members"]
    for model in (MLP, SwishCNN):
        for name in ("append", "forward", "pop", "train", "parameters", "to", "state_dict"):
            assert skip(None, "class", name, getattr(model, name), False, {}) is True, f"{model.__name__}.{name}"
    assert skip(None, "class", "score", EnergyModel.score, False, {}) is None  # ebmlib's own: documented
    assert skip(None, "class", "energy", EnergyModel.energy, False, {}) is None
    assert skip(None, "module", "MLP", MLP, False, {}) is None


# ------------------------------------------------------------------------------------- the gallery
GALLERY = ROOT / "examples" / "gallery"


def load_docs_script(name: str) -> ModuleType:
    """Import ``docs/scripts/<name>.py`` under its own name, as docs/conf.py does."""
    spec = importlib.util.spec_from_file_location(name, DOCS / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def conf_gallery() -> dict[str, object]:
    """``sphinx_gallery_conf`` from docs/conf.py, its literal entries only."""
    for statement in ast.parse((DOCS / "conf.py").read_text()).body:
        if isinstance(statement, ast.Assign) and getattr(statement.targets[0], "id", None) == "sphinx_gallery_conf":
            assert isinstance(statement.value, ast.Dict)
            pairs = zip(statement.value.keys, statement.value.values, strict=True)
            return {ast.literal_eval(k): ast.literal_eval(v) for k, v in pairs
                    if k is not None and not isinstance(v, ast.Call)}
    raise AssertionError("docs/conf.py has no sphinx_gallery_conf")


def test_gallery_scripts_are_run_by_the_build_and_have_a_title():
    conf = conf_gallery()
    scripts = sorted(GALLERY.glob("*.py"))
    assert scripts and (GALLERY / "README.rst").is_file()
    assert conf["gallery_dirs"] == "auto_examples" and conf["abort_on_example_error"] is True
    assert "gallery_budget.check_time_budget" in conf["reset_modules"] and conf["reset_modules_order"] == "both"
    for script in scripts:
        # sphinx-gallery runs the files whose path matches filename_pattern; the others it only shows.
        assert re.search(str(conf["filename_pattern"]), f"/{script.name}"), f"{script.name} would not be run"
        docstring = ast.get_docstring(ast.parse(script.read_text())) or ""
        title, underline, *_ = [*docstring.splitlines(), "", ""]
        assert title.strip() and set(underline) == {"="} and len(underline) >= len(title), \
            f"{script.name}: the module docstring must start with a reST title"


def test_gallery_time_budget_warns_only_past_its_budget(monkeypatch, caplog):
    pytest.importorskip("sphinx", reason="docs/scripts/gallery_budget.py needs sphinx: pip install -e '.[test]'")
    budget = load_docs_script("gallery_budget")
    cpu = iter([100.0, 100.0 + budget.SECONDS_PER_SCRIPT - 1, 200.0, 200.0 + budget.SECONDS_PER_SCRIPT + 5])
    monkeypatch.setattr(budget.time, "process_time", lambda: next(cpu))
    # A busy machine: every script waits minutes for a core. Waiting is no CPU time, so it doesn't count.
    wall = iter(range(0, 10_000, 600))
    monkeypatch.setattr(budget.time, "perf_counter", lambda: float(next(wall)))
    monkeypatch.setattr(budget.time, "time", lambda: float(next(wall)))
    with caplog.at_level("WARNING"):
        budget.check_time_budget({}, None, when="before")  # entering a folder: no clock
        budget.check_time_budget({}, "/x/plot_fast.py", when="before")
        budget.check_time_budget({}, "/x/plot_fast.py", when="after")
        assert not caplog.records
        budget.check_time_budget({}, "/x/plot_slow.py", when="before")
        budget.check_time_budget({}, "/x/plot_slow.py", when="after")
    used = f"plot_slow.py used {budget.SECONDS_PER_SCRIPT + 5:.1f} s of CPU time"
    assert len(caplog.records) == 1 and used in caplog.records[0].getMessage()


def test_gallery_time_budget_counts_cpu_time_on_one_thread_only():
    budget = load_docs_script("gallery_budget")
    threads = torch.get_num_threads()
    budget.check_time_budget({}, "/x/plot_waits.py", when="before")
    try:
        assert torch.get_num_threads() == budget.THREADS_PER_SCRIPT == 1  # no spinning worker threads
        started = budget.cpu_seconds()
        time.sleep(0.5)  # what a script does while other jobs hold the cores: wait
        assert budget.cpu_seconds() - started < 0.2
    finally:
        budget.check_time_budget({}, "/x/plot_waits.py", when="after")
    assert torch.get_num_threads() == threads  # restored for the rest of the build


def test_gallery_langevin_script_matches_the_exact_law():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        result = runpy.run_path(str(GALLERY / "plot_langevin_landscape.py"))
    finally:
        plt.close("all")
    radius, angle = result["radius"], result["angle"]
    assert result["trajectory"].shape == (61, 4000, 2)  # 600 steps kept every 10, and the start
    # Fixed seed. 4000 chains: standard errors ~0.004 for the mean radius (std 0.25) and ~0.008
    # for E[cos 3 theta]; the tolerances are about 4 of them (step-size bias is ~0.001 here).
    # Measured: 2.035 against 2.031, and 0.592 against 0.596.
    assert abs(float(radius.mean()) - result["exact_radius"]) < 0.02
    assert abs(float(torch.cos(3 * angle).mean()) - result["exact_cos"]) < 0.03
    assert abs(result["exact_cos"] - 0.5963) < 1e-3  # I1(1.5) / I0(1.5)
