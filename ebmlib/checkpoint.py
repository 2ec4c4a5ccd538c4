"""Checkpoint files: atomic writes, safe loading and rotation.

A checkpoint is a plain ``dict`` of tensors, numbers, strings and containers of
them, written with :func:`torch.save` and read back with
``torch.load(..., weights_only=True)``, so loading a file never runs code from it.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)\.pt")


class CheckpointError(Exception):
    """A checkpoint file is missing, truncated, corrupted or not a checkpoint.

    Examples
    --------
    >>> try:
    ...     load_checkpoint("no/such/checkpoint.pt")
    ... except CheckpointError as error:
    ...     print(type(error).__name__)
    CheckpointError
    """


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically.

    The file is written to a temporary file in the same folder, flushed to disk
    and then renamed over ``path`` (:func:`os.replace`), so a crash mid-write
    leaves any previous file at ``path`` intact and never a half-written one.

    Parameters
    ----------
    path : path-like
        Destination; its folder is created if needed.
    state : mapping of str to tensors, numbers, strings and containers of them

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> path = save_checkpoint(f"{folder}/checkpoint-00000001.pt", {"step": 1, "w": torch.ones(2)})
    >>> load_checkpoint(path)["w"]
    tensor([1., 1.])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(dict(state), file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would make checkpoints private to their writer
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Checks the CRC-32 of every entry of the file (a zip archive), then uses
    ``torch.load(weights_only=True)``: only tensors, numbers, strings and
    containers are accepted, and a file that tries to unpickle anything else is
    refused without running it.

    Parameters
    ----------
    path : path-like
    map_location : str or torch.device, optional
        Where to put the tensors (as in :func:`torch.load`).

    Returns
    -------
    dict

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, corrupted, holds disallowed objects
        or is not a dict; the message names the file.

    Examples
    --------
    >>> load_checkpoint("no/such/checkpoint.pt")
    Traceback (most recent call last):
    ...
    ebmlib.checkpoint.CheckpointError: checkpoint file no/such/checkpoint.pt does not exist
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:  # torch.save's format; every entry carries a CRC-32
            damaged = archive.testzip()
        if damaged is not None:
            raise ValueError(f"the checksum of its entry {damaged} does not match its data")
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a damaged file can fail anywhere in the unpickler (IndexError, KeyError, ...)
        raise CheckpointError(
            f"checkpoint file {path} is truncated, corrupted or holds objects other than tensors and "
            f"containers ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint file {path} must hold a dict, got {type(state).__name__}")
    return state


def checkpoint_path(directory: str | os.PathLike[str], step: int) -> Path:
    """``<directory>/checkpoint-<step:08d>.pt``.

    Examples
    --------
    >>> checkpoint_path("runs", 42).name
    'checkpoint-00000042.pt'
    """
    return Path(directory) / f"checkpoint-{step:08d}.pt"


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Checkpoint files ``checkpoint-<step>.pt`` in ``directory``, oldest step first.

    Examples
    --------
    >>> list_checkpoints("no/such/folder")
    []
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(match.group(1)), p) for p in directory.iterdir() if (match := CHECKPOINT_PATTERN.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint with the highest step in ``directory``, or ``None``.

    Examples
    --------
    >>> latest_checkpoint("no/such/folder") is None
    True
    """
    found = list_checkpoints(directory)
    return found[-1] if found else None


def prune_checkpoints(directory: str | os.PathLike[str], keep: int = 3) -> list[Path]:
    """Delete all but the ``keep`` checkpoints with the highest steps; return the deleted paths.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for step in (1, 2, 3, 4):
    ...     _ = save_checkpoint(checkpoint_path(folder, step), {"step": step})
    >>> [p.name for p in prune_checkpoints(folder, keep=3)]
    ['checkpoint-00000001.pt']
    """
    if keep < 1:
        raise ValueError(f"keep must be a positive number of checkpoints, got {keep}")
    stale = list_checkpoints(directory)[:-keep]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale

