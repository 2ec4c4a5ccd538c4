"""Exact resume: random-number states, a loader's data order replayed mid-epoch, and what a checkpoint must fit.

A run resumed from a checkpoint continues bit for bit like one that was never
stopped when everything random is restored: the trainer's generator, the global
torch RNG (and CUDA's), and the data order of the epoch that was cut short,
which :class:`LoaderReplay` replays from the RNG states saved at its start.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from ..recipes import Recipe

__all__ = [
    "capture_rng_states", "restore_rng_states", "LoaderReplay", "loader_generators", "process_local_state",
    "state_mismatches", "process_state", "find_checkpoint", "read_trainer_checkpoint",
]

TRAINER_KEYS = frozenset({"recipe", "optimizers", "processes", "world_size", "step", "epoch", "callbacks"})
"""What a :class:`~ebmlib.training.Trainer` checkpoint holds at least."""


def capture_rng_states(generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """The states of ``generator``, the global torch CPU RNG and every CUDA RNG, as tensors.

    Returns
    -------
    dict of str to Tensor (uint8)
        ``"torch"``, ``"generator"`` (if given) and ``"cuda"`` (shape
        ``(n_devices, state_size)``, if CUDA is initialised).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> states = capture_rng_states(g)
    >>> first = torch.rand(2, generator=g)
    >>> restore_rng_states(states, g)
    >>> torch.equal(torch.rand(2, generator=g), first)
    True
    """
    states = {"torch": torch.get_rng_state()}
    if generator is not None:
        states["generator"] = generator.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return states


def restore_rng_states(states: Mapping[str, Tensor], generator: torch.Generator | None = None) -> None:
    """Restore states captured by :func:`capture_rng_states` (CUDA ones only where CUDA exists).

    Examples
    --------
    >>> restore_rng_states(capture_rng_states())
    """
    torch.set_rng_state(states["torch"].cpu())
    if generator is not None and "generator" in states:
        generator.set_state(states["generator"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(states["cuda"].cpu()))


class LoaderReplay:
    """Iterates a loader epoch by epoch so that a resumed run sees the data in the same order.

    At the start of every epoch it records the states of the RNGs that decide
    the loader's data order: the global torch RNG and any ``generator`` of the
    loader or of its sampler. Resumed ``skip`` batches into an epoch, it sets
    them back to those states, draws the epoch's order again and skips what was
    done; the loader's own generators then continue from the replay, as in a run
    that was never stopped. Resumed at the start of an epoch, it sets the
    loader's own generators to their states at the save (the global RNG is
    restored with the checkpoint's RNG states). A sampler's ``set_epoch``
    (e.g. a :class:`~torch.utils.data.distributed.DistributedSampler`'s) is
    called with the epoch first.

    Examples
    --------
    >>> from torch.utils.data import DataLoader
    >>> def loader():
    ...     return DataLoader(range(6), batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(0))
    >>> replay, first = LoaderReplay(), loader()
    >>> epoch_0 = [b.tolist() for b in replay.batches(first, epoch=0)]
    >>> state = replay.state_dict()  # saved after epoch 0
    >>> epoch_1 = [b.tolist() for b in replay.batches(first, epoch=1)]
    >>> again = LoaderReplay()
    >>> again.load_state_dict(state)
    >>> [b.tolist() for b in again.batches(loader(), epoch=1)] == epoch_1  # a new loader, the same order
    True
    """

    def __init__(self) -> None:
        self.epoch_start_states: dict[str, Tensor] = {}
        self.generators: dict[str, torch.Generator] = {}
        self.saved_states: dict[str, Tensor] = {}

    def batches(self, loader: Iterable[Any], epoch: int, skip: int = 0) -> Iterator[Any]:
        """The batches of epoch ``epoch`` after the first ``skip`` (already trained on)."""
        set_epoch = getattr(getattr(loader, "sampler", None), "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        self.generators = generators = loader_generators(loader)
        saved, self.saved_states = self.saved_states, {}
        if skip == 0:
            for name, state in saved.items():
                if name in generators and name != "global":
                    generators[name].set_state(state)
            self.epoch_start_states = {name: g.get_state() for name, g in generators.items()}
            return iter(loader)
        current = generators["global"].get_state()
        for name, generator in generators.items():
            if name in self.epoch_start_states:
                generator.set_state(self.epoch_start_states[name])
        batches = iter(loader)
        for _ in range(skip):
            if next(batches, None) is None:
                break
        # The checkpoint restored the global RNG to its state at the save; the loader's own generators are
        # not in it: they continue from the replay.
        generators["global"].set_state(current)
        return batches

    def state_dict(self) -> dict[str, dict[str, Tensor]]:
        """The RNG states of the current epoch's start, and the loader's own generators' states now."""
        now = {name: g.get_state() for name, g in self.generators.items() if name != "global"}
        return {"epoch_start": dict(self.epoch_start_states), "now": now}

    def load_state_dict(self, state: Mapping[str, Mapping[str, Tensor]]) -> None:
        """Restore :meth:`state_dict`; the loader's generators are set when :meth:`batches` next starts an epoch."""
        self.epoch_start_states = {name: value.cpu() for name, value in state["epoch_start"].items()}
        self.saved_states = {name: value.cpu() for name, value in state["now"].items()}


def loader_generators(loader: Iterable[Any]) -> dict[str, torch.Generator]:
    """The RNGs that decide a loader's data order: the global one and any of its own.

    Examples
    --------
    >>> sorted(loader_generators([torch.zeros(2)]))
    ['global']
    """
    found: dict[str, torch.Generator] = {"global": torch.default_generator}
    for name, owner in (("loader", loader), ("sampler", getattr(loader, "sampler", None))):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found.values()):
            found[name] = generator
    return found


def process_local_state(recipe: Recipe) -> dict[str, Tensor]:
    """The entries of ``recipe.state_dict()`` that are not in its data-parallel modules (e.g. its chains).

    Under several processes these differ from process to process and are
    saved for each; the data-parallel ones are equal everywhere.

    Examples
    --------
    >>> from ebmlib.buffers import ReplayBuffer, UniformInit
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> from ebmlib.recipes import EBM
    >>> from ebmlib.samplers import Langevin
    >>> model = NetworkEnergy(MLP(2, 1, hidden=4))
    >>> recipe = EBM(model, Langevin(0.1), ReplayBuffer(8, UniformInit((2,))), torch.optim.SGD(model.parameters()))
    >>> sorted(process_local_state(recipe))
    ['buffer.initializer._device_tracker', 'buffer.samples']
    """
    shared = {id(t) for module in recipe.data_parallel_modules() for t in module.state_dict(keep_vars=True).values()}
    state = recipe.state_dict(keep_vars=True)
    return {name: value.detach() for name, value in state.items() if id(value) not in shared}


def state_mismatches(saved: Mapping[str, Any], module: nn.Module) -> list[str]:
    """What keeps ``saved`` from loading into ``module`` (nothing: ``[]``): missing, unexpected, reshaped entries.

    Examples
    --------
    >>> state_mismatches({"weight": torch.zeros(2, 2), "extra": torch.zeros(1)}, nn.Linear(2, 1))
    ['missing bias', 'unexpected extra', 'weight has shape (2, 2) there, (1, 2) here']
    """
    expected = module.state_dict()
    problems = []
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected)}")
    for name in sorted(set(saved) & set(expected)):
        there, here = saved[name], expected[name]
        if not isinstance(there, Tensor) or there.shape != here.shape:
            shape = tuple(there.shape) if isinstance(there, Tensor) else type(there).__name__
            problems.append(f"{name} has shape {shape} there, {tuple(here.shape)} here")
    return problems


def process_state(
    recipe: Recipe, generator: torch.Generator, replay: LoaderReplay, with_local_state: bool = True
) -> dict[str, Any]:
    """This process's own part of a checkpoint, on the CPU: RNG states, loader replay and (optionally) its chains.

    Examples
    --------
    >>> from torch import nn
    >>> class Fixed(Recipe):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.model = nn.Linear(1, 1)
    ...     def training_step(self, x, y=None, generator=None): return {}
    ...     def optimizers(self): return []
    ...     def data_parallel_modules(self): return [self.model]
    >>> sorted(process_state(Fixed(), torch.Generator(), LoaderReplay()))
    ['loader', 'local_state', 'rng']
    """
    local = process_local_state(recipe) if with_local_state else {}
    state = {"rng": capture_rng_states(generator), "loader": replay.state_dict(), "local_state": local}
    return _to_cpu(state)


def _to_cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.cpu()
    return {name: _to_cpu(entry) for name, entry in value.items()} if isinstance(value, dict) else value


def find_checkpoint(path_or_dir: str | os.PathLike[str]) -> Path:
    """A checkpoint file as given, or the latest ``checkpoint-<step>.pt`` in a folder.

    Raises
    ------
    CheckpointError
        If the folder holds none (the message says where it looked).

    Examples
    --------
    >>> find_checkpoint("no/such/folder")
    Traceback (most recent call last):
    ...
    ebmlib.checkpoint.CheckpointError: no checkpoint-<step>.pt files in no/such/folder to resume from
    """
    path = Path(path_or_dir)
    if path.is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"no checkpoint-<step>.pt files in {path} to resume from")
    return latest


def read_trainer_checkpoint(
    path: Path, recipe: Recipe, world_size: int, map_location: torch.device | str | None = None
) -> dict[str, Any]:
    """Load a Trainer checkpoint and check that ``recipe`` and ``world_size`` processes can resume from it.

    Raises
    ------
    CheckpointError
        If it can't be read, is not a Trainer checkpoint, was written by
        another number of processes, or does not fit the recipe (the message
        names the file and the problem).

    Examples
    --------
    >>> import tempfile
    >>> from torch import nn
    >>> from ebmlib.checkpoint import save_checkpoint
    >>> path = save_checkpoint(f"{tempfile.mkdtemp()}/checkpoint-00000001.pt", {"step": 1})
    >>> read_trainer_checkpoint(path, None, 1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ebmlib.checkpoint.CheckpointError: checkpoint file ... is not a Trainer checkpoint (missing [...])
    """
    state = load_checkpoint(path, map_location=map_location)
    missing = TRAINER_KEYS - set(state)
    if missing:
        raise CheckpointError(f"checkpoint file {path} is not a Trainer checkpoint (missing {sorted(missing)})")
    if state["world_size"] != world_size:
        raise CheckpointError(
            f"checkpoint file {path} was written by {state['world_size']} processes and this run has {world_size}: "
            "each process resumes its own chains and random streams, so resume with the same number "
            f"(torchrun --nproc_per_node {state['world_size']})"
        )
    mismatches = state_mismatches(state["recipe"], recipe)
    if mismatches:
        raise CheckpointError(f"checkpoint file {path} does not fit this recipe: {'; '.join(mismatches[:5])}")
    return state
