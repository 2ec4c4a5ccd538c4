"""Sphinx configuration for ebmlib's documentation.

Build (offline, every warning an error)::

    python3 -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "scripts"))

from rst_tables import write_generated_pages  # noqa: E402

import ebmlib  # noqa: E402

project = "ebmlib"
author = "ebmlib developers"
copyright = "2025, ebmlib developers"  # noqa: A001
release = version = ebmlib.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]

# No intersphinx: the docs build offline.
templates_path = ["_templates"]
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"ebmlib {release}"
html_static_path = ["_static"]

# Formulas render offline: MathJax 3 (TeX in, SVG out, one file with every TeX
# extension and its glyphs) is bundled in docs/_static/mathjax; see the NOTICE there.
# A relative mathjax_path is read relative to the built _static folder.
mathjax_path = "mathjax/tex-svg-full.js"

# The gallery: sphinx-gallery runs every examples/gallery/plot_*.py script during the
# build and writes its page (text, code, printed output, figures) to docs/auto_examples/
# (git-ignored). To add one: a script named plot_<topic>.py whose module docstring starts
# with a reST title, cells separated by "# %%" comment blocks, figures drawn with
# matplotlib, every random draw from a seeded generator. It must use at most
# gallery_budget.SECONDS_PER_SCRIPT seconds of CPU time, run on one torch thread (the build
# fails otherwise; CPU time, not wall-clock time, so that a busy machine can't fail it);
# ruff checks it with the other examples.
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples" / "gallery"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "reset_modules": ("matplotlib", "gallery_budget.check_time_budget"),
    "reset_modules_order": "both",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "capture_repr": (),  # the scripts print what they mean to show
    "write_computation_times": False,  # its pages load jQuery and DataTables from CDNs
    "min_reported_time": 0,
}

autosummary_generate = True
autosummary_imported_members = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_inherit_docstrings = True
python_use_unqualified_type_names = True

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# Parameter types are free text ("Tensor, shape ``(B,)``", "path-like, optional"):
# render them as text, not as cross-references to classes named "shape" or "optional".
napoleon_use_param = False
napoleon_use_keyword = False

# Every broken cross-reference is an error. Without intersphinx (no internet) the
# targets of torch's, numpy's and the standard library's types don't exist, so
# references to those, and only those, are allowed to stay unresolved: dotted names
# from signatures (``torch.Tensor``, ``collections.abc.Callable``), and torch's two
# classes by their short names, as napoleon's "Attributes" types (``Tensor``) and
# docstrings inherited from ``torch.nn.Module.forward`` (``Module``) write them.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|torchvision|numpy|np|nn|abc|collections|os|pathlib|typing|typing_extensions)(\..*)?"),
    (r"py:class", r"Tensor|Module"),
]


def check_docstring(app, what, name, obj, options, lines):  # type: ignore[no-untyped-def]
    """A public module, class or function without a docstring fails the build."""
    if what in {"module", "class", "function", "exception"} and not any(line.strip() for line in lines):
        from sphinx.util import logging

        logging.getLogger(__name__).warning(f"{what} {name} has no docstring", type="ebmlib", subtype="docstring")


def skip_tuple_fields(app, what, name, obj, skip, options):  # type: ignore[no-untyped-def]
    """NamedTuple fields are described in their class's Attributes section."""
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


def skip_torch_members(app, what, name, obj, skip, options):  # type: ignore[no-untyped-def]
    """Methods and properties a class inherits from torch (``nn.Sequential.append``, ``nn.Module.train``)
    are torch's to document: the model pages (``MLP``, ``SwishCNN``) list only what ebmlib adds."""
    function = getattr(obj, "fget", obj)  # a property's getter
    function = getattr(function, "__func__", function)  # a classmethod's or staticmethod's function
    if what == "class" and callable(function) and (getattr(function, "__module__", None) or "").startswith("torch."):
        return True
    return None


LITERAL = re.compile(r"``.+?``")
"""An inline literal in reST."""


def unescape_literal_stars(app, what, name, obj, options, lines):  # type: ignore[no-untyped-def]
    """Undo the backslash napoleon puts before a ``*`` inside an inline literal.

    Napoleon reads a numpy "Returns" line without a name, such as
    ``Tensor, shape (n, *event_shape)`` with the shape as a literal, as a comma-separated list of
    names, and escapes each one that starts with ``*`` as if it were ``*args``. Inside a literal
    the backslash would show on the page. ebmlib's docstrings never escape a ``*`` inside a
    literal, so each such backslash is napoleon's. Runs after napoleon (priority 600).
    """
    for index, line in enumerate(lines):
        if "\\*" in line:
            lines[index] = LITERAL.sub(lambda match: match.group(0).replace("\\*", "*"), line)


def setup(app):  # type: ignore[no-untyped-def]
    write_generated_pages(ROOT, DOCS / "_generated")
    app.connect("autodoc-process-docstring", check_docstring)
    app.connect("autodoc-process-docstring", unescape_literal_stars, priority=600)
    app.connect("autodoc-skip-member", skip_tuple_fields)
    app.connect("autodoc-skip-member", skip_torch_members)
