"""A time budget for the gallery scripts, which sphinx-gallery runs during every clean docs build.

docs/conf.py names :func:`check_time_budget` in ``sphinx_gallery_conf["reset_modules"]``
(by its qualified name, so that Sphinx can cache the configuration), with
``reset_modules_order = "both"``: sphinx-gallery calls it before and after each script it
runs. A script that uses more than :data:`SECONDS_PER_SCRIPT` seconds of CPU logs a Sphinx
warning, which the ``-W`` build turns into a failure naming the script and its time, so CI
stays fast as the gallery grows.

The budget is CPU time of the build process (:func:`time.process_time`), not wall-clock
time, so that a busy machine cannot fail the build: while other jobs hold the cores the
script waits, and waiting costs no CPU time. For the same reason each script runs with one
torch thread (the thread count is restored after it): with several, torch's worker threads
spin while they wait for each other, and on shared cores that spinning is CPU time that
grows with the load. One thread is also the fastest setting for the gallery's small 2D
models on a small CPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

SECONDS_PER_SCRIPT = 60.0
"""CPU seconds one gallery script may use, figures included, with one torch thread.

The slowest, ``plot_training_methods.py``, used 14 s of CPU time (29 s of wall-clock time) on a
2-core CPU that other jobs kept busy (load average 4 to 6). CPU time grows a little with load
too (the cores' caches and memory are shared), hence the margin."""

THREADS_PER_SCRIPT = 1
"""torch threads while a gallery script runs: one, so that its CPU time measures its work only."""

_started: dict[str, tuple[float, int]] = {}


def cpu_seconds() -> float:
    """CPU time of this process, user and system, every thread (:func:`time.process_time`)."""
    return time.process_time()


def check_time_budget(gallery_conf: dict[str, Any], fname: str | None, when: str) -> None:
    """Before a gallery script runs, start its CPU clock on one torch thread; after it, warn if it used more
    than :data:`SECONDS_PER_SCRIPT` CPU seconds, and restore the thread count."""
    if fname is None:  # sphinx-gallery entering a folder of scripts, not running one
        return
    import torch

    if when == "before":
        _started[fname] = (cpu_seconds(), torch.get_num_threads())
        torch.set_num_threads(THREADS_PER_SCRIPT)
        return
    started = _started.pop(fname, None)
    if started is None:  # "after" without "before": nothing to time
        return
    started_at, threads = started
    used = cpu_seconds() - started_at
    torch.set_num_threads(threads)
    if used > SECONDS_PER_SCRIPT:
        from sphinx.util import logging

        logging.getLogger(__name__).warning(
            f"gallery script {Path(fname).name} used {used:.1f} s of CPU time, over its budget of "
            f"{SECONDS_PER_SCRIPT:g} s; make it faster (fewer steps or chains) so that CI stays fast",
            type="ebmlib", subtype="gallery_budget")
