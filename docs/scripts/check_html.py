"""Check the built HTML for what a reader would see broken but ``sphinx -W`` lets through.

Usage (CI runs it right after the docs build)::

    python3 docs/scripts/check_html.py docs/_build/html

Every ``*.html`` page under the folder is read (``_static`` left out) and these are reported:

- docutils system messages (``class="system-message"``) and ``problematic`` markup: a reST error
  rendered into the page as a red box or red text;
- a ``.. contents::`` table of contents, which furo covers with a red "ERROR: Adding a table of
  contents in Furo-based documentation is unnecessary" box (furo shows the page's contents in
  its right sidebar); the class ``this-will-duplicate-information-and-it-is-still-useful-here``
  is furo's escape hatch and is accepted;
- reST markup shown as text (double backquotes, or a role such as ``:class:`` followed by a
  backquote, outside code): a docstring or page the parser did not read as intended;
- reST escapes shown as text (a backslash before ``*``, ``_``, a backquote or ``|``, in text or
  inline code, not in code blocks or formulas), such as ``\\*event_shape``: an escape inside a
  literal, where reST keeps the backslash (napoleon writes one into unnamed "Returns" lines of
  numpy docstrings; docs/conf.py takes it out again);
- doubled parentheses (``jem_loss() ()``, outside code blocks): a role that adds ``()`` to a
  function's name, followed by ``()`` written by hand;
- formulas (``class="math"``) on a page that does not load MathJax from a file of the build:
  offline, or with the file missing, they show as raw ``\\(...\\)`` LaTeX;
- scripts and stylesheets loaded from the network (``http://``, ``https://``, ``//``), such as
  a CDN MathJax: the docs must read the same offline;
- scripts, stylesheets and images that point at a file the build does not contain.

It exits with status 1 and one line per problem, or prints a one-line summary and exits 0.
Only the standard library is used.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

FURO_ESCAPE_HATCH = "this-will-duplicate-information-and-it-is-still-useful-here"
"""The class furo accepts on a ``.. contents::`` block without drawing its error box over it."""

RAW_MARKUP = re.compile(r"``|:[a-z]+(?::[a-z]+)?:`")
"""reST that should have become markup: inline literals, and roles such as ``:class:`` + backquote."""

ESCAPED_MARKUP = re.compile(r"\\[*_`|]\S*")
"""A reST escape shown as text: a backslash before a markup character, such as ``\\*event_shape``."""

DOUBLED_PARENTHESES = re.compile(r"[^\s\0]{0,40}\(\)\s*\(\)")
"""A call written twice, such as ``jem_loss() ()``: the ``:func:`` role adds ``()`` and the text adds more."""

CODE_TAGS = frozenset({"pre", "code", "kbd", "samp", "tt", "script", "style", "textarea"})
"""Elements whose text is shown (or run) as written, so reST-looking text in them is fine."""

INLINE_CODE_TAGS = CODE_TAGS - {"pre", "script", "style", "textarea"}
"""Code within a sentence, read with the text around it; in code blocks ``f()()`` may well be meant."""

BLOCK_TAGS = frozenset({"p", "div", "dd", "dt", "li", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "section",
                        "article", "aside", "nav", "figcaption", "caption", "blockquote", "br", "table", "tr"})
"""Elements that end a run of text: parentheses on either side of one are not one phrase."""


@dataclass
class PageContents:
    """What one page shows and loads, as collected by :class:`PageReader`."""

    system_messages: int = 0
    problematic: int = 0
    tables_of_contents: int = 0
    formulas: int = 0
    raw_markup: list[str] = field(default_factory=list)
    escaped_markup: list[str] = field(default_factory=list)
    doubled_parentheses: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    stylesheets: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


class PageReader(HTMLParser):
    """Collect a page's error markup, formulas and the files it loads."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = PageContents()
        self.open_code: list[str] = []  # the code (and formula) elements around the current text
        self.text: list[str] = []  # the page's text outside code blocks and formulas; NUL between blocks

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        classes = set(attributes.get("class", "").split())
        self.page.system_messages += "system-message" in classes
        self.page.problematic += "problematic" in classes
        self.page.tables_of_contents += "contents" in classes and FURO_ESCAPE_HATCH not in classes
        self.page.formulas += "math" in classes
        if tag in BLOCK_TAGS:
            self.text.append("\0")
        if tag in CODE_TAGS or "math" in classes:  # a formula's text is LaTeX, for MathJax to read
            if "math" in classes:
                self.text.append("formula")  # it reads as words: "f() (x)" is no doubled "()"
            self.open_code.append(tag)
        if tag == "script" and attributes.get("src"):
            self.page.scripts.append(attributes["src"])
        elif tag == "link" and "stylesheet" in attributes.get("rel", "").split() and attributes.get("href"):
            self.page.stylesheets.append(attributes["href"])
        elif tag == "img" and attributes.get("src"):
            self.page.images.append(attributes["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag in BLOCK_TAGS:
            self.text.append("\0")
        if tag in self.open_code:
            while self.open_code.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if not self.open_code and RAW_MARKUP.search(data):
            self.page.raw_markup.append(" ".join(data.split())[:80])
        if set(self.open_code) <= INLINE_CODE_TAGS:  # text or inline code, not a code block or a formula
            self.page.escaped_markup += ESCAPED_MARKUP.findall(data)
            self.text.append(data)

    def close(self) -> None:
        super().close()
        text = "".join(self.text)
        self.page.doubled_parentheses += [" ".join(m.group(0).split()) for m in DOUBLED_PARENTHESES.finditer(text)]


def is_remote(url: str) -> bool:
    """Whether ``url`` is fetched from the network (a scheme other than ``file``/``data``, or ``//host``)."""
    parts = urlsplit(url)
    return bool(parts.netloc) or parts.scheme not in {"", "file", "data"}


def local_file(page: Path, url: str) -> Path | None:
    """The file a relative ``url`` on ``page`` points at (query and fragment dropped); None for remote or data URLs."""
    parts = urlsplit(url)
    if is_remote(url) or parts.scheme == "data":
        return None
    return (page.parent / unquote(parts.path)).resolve()


def read_page(page: Path) -> PageContents:
    """What the built page ``page`` shows and loads."""
    reader = PageReader()
    reader.feed(page.read_text(encoding="utf-8"))
    reader.close()
    return reader.page


def check_page(page: Path, root: Path, found: PageContents | None = None) -> list[str]:
    """The problems of one built page, each a line starting with the page's path relative to ``root``."""
    found = read_page(page) if found is None else found
    name = page.relative_to(root).as_posix()
    problems = []
    if found.system_messages:
        problems.append(f"{name}: {found.system_messages} docutils system message(s) shown in the page")
    if found.problematic:
        problems.append(f"{name}: {found.problematic} piece(s) of 'problematic' markup shown in red")
    for text in found.raw_markup:
        problems.append(f"{name}: reST markup shown as text: {text!r}")
    for text in found.escaped_markup:
        problems.append(f"{name}: reST escape shown as text: {text!r} (a backslash the parser did not remove)")
    for text in found.doubled_parentheses:
        problems.append(f"{name}: doubled parentheses: {text!r} (a :func: or :meth: role already adds '()')")
    if found.tables_of_contents:
        problems.append(f"{name}: a '.. contents::' table of contents, which furo covers with a red ERROR box "
                        "(furo shows the page's contents in its sidebar; remove the directive)")
    for kind, urls in (("script", found.scripts), ("stylesheet", found.stylesheets), ("image", found.images)):
        for url in urls:
            target = local_file(page, url)
            if is_remote(url):
                problems.append(f"{name}: loads the {kind} {url} from the network; the docs must read the same offline")
            elif target is not None and not target.is_file():
                problems.append(f"{name}: the {kind} {url} is not in the build (looked for {target})")
    local_mathjax = [url for url in found.scripts if "mathjax" in url.lower() and not is_remote(url)
                     and (target := local_file(page, url)) is not None and target.is_file()]
    if found.formulas and not local_mathjax:
        problems.append(f"{name}: {found.formulas} formula(s) but no MathJax loaded from a file of the build; "
                        "offline they show as raw \\(...\\) LaTeX")
    return problems


@dataclass
class Report:
    """The result of :func:`check_tree`: the problems found, and how much was looked at."""

    problems: list[str]
    pages: int
    formulas: int


def check_tree(root: Path) -> Report:
    """Check every ``*.html`` page under ``root`` except those in ``_static``."""
    root = root.resolve()
    pages = sorted(path for path in root.rglob("*.html") if "_static" not in path.relative_to(root).parts)
    if not pages:
        return Report([f"{root}: no HTML pages found (is this the output folder of the docs build?)"], 0, 0)
    contents = {page: read_page(page) for page in pages}
    problems = [problem for page, found in contents.items() for problem in check_page(page, root, found)]
    return Report(problems, len(pages), sum(found.formulas for found in contents.values()))


def main(argv: list[str]) -> int:
    """Command line: ``check_html.py BUILD_DIR``; returns the exit status."""
    if len(argv) != 1:
        print("usage: python3 docs/scripts/check_html.py BUILD_DIR", file=sys.stderr)
        return 2
    report = check_tree(Path(argv[0]))
    for problem in report.problems:
        print(problem)
    if report.problems:
        print(f"check_html: {len(report.problems)} problem(s) in {argv[0]}", file=sys.stderr)
        return 1
    print(f"check_html: {report.pages} pages and {report.formulas} formulas checked, no problems")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
