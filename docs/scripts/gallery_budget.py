"""A time budget for the gallery scripts, which sphinx-gallery runs during every clean docs build.

docs/conf.py names :func:`check_time_budget` in ``sphinx_gallery_conf["reset_modules"]``
(by its qualified name, so that Sphinx can cache the configuration), with
``reset_modules_order = "both"``: sphinx-gallery calls it before and after each script it
runs. A script that takes longer than :data:`SECONDS_PER_SCRIPT` logs a Sphinx warning,
which the ``-W`` build turns into a failure naming the script and its time, so CI stays fast
as the gallery grows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

SECONDS_PER_SCRIPT = 30.0
"""Wall-clock seconds one gallery script may take on CI's 2 cores (figures included)."""

_started: dict[str, float] = {}


def check_time_budget(gallery_conf: dict[str, Any], fname: str | None, when: str) -> None:
    """Start the clock before a gallery script runs; after it, warn if it ran past :data:`SECONDS_PER_SCRIPT`."""
    if fname is None:  # sphinx-gallery entering a folder of scripts, not running one
        return
    if when == "before":
        _started[fname] = time.perf_counter()
        return
    started = _started.pop(fname, None)
    if started is None:  # "after" without "before": nothing to time
        return
    elapsed = time.perf_counter() - started
    if elapsed > SECONDS_PER_SCRIPT:
        from sphinx.util import logging

        logging.getLogger(__name__).warning(
            f"gallery script {Path(fname).name} took {elapsed:.1f} s, over its budget of {SECONDS_PER_SCRIPT:g} s; "
            "make it faster (fewer steps or chains) so that CI stays fast",
            type="ebmlib", subtype="gallery_budget")
