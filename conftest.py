"""Doctest collection: leave out the modules whose optional dependency is missing (CI installs them all)."""

import importlib.util

OPTIONAL = {"ebmlib/training/lightning.py": "lightning"}

collect_ignore = [path for path, package in OPTIONAL.items() if importlib.util.find_spec(package) is None]
