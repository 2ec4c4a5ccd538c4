"""The docs as a reader sees them: the checker of the built HTML, the bundled MathJax, no furo error boxes.

CI builds the docs and runs ``docs/scripts/check_html.py`` on the result; these tests check the
checker itself on crafted pages, and the sources it relies on, without building anything.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

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
    "missing_image.html": (page(body='<img alt="x" src="../_images/nowhere.png">'), "is not in the build"),
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
                '<p>A link out is fine: <a href="https://pytorch.org">PyTorch</a>.</p>')
    (tmp_path / "pages" / "good.html").write_text(good)
    return tmp_path


def test_check_html_passes_a_good_page(built):
    checker = load_checker()
    report = checker.check_tree(built)
    assert report.problems == [] and report.pages == 1 and report.formulas == 1
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
