"""A reusable training loop for any recipe: devices, seeds, progress, evaluation, checkpoints."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checkpoint import (
    CheckpointError,
    capture_rng_states,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_states,
    save_checkpoint,
)
from .distributed import all_reduce_mean, distribute, process_info
from .divergence import DivergenceGuard
from .recipes import EBM

Callback = Callable[["Trainer", dict[str, Tensor]], None]
Evaluate = Callable[[EBM], Mapping[str, float]]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; any other name or device as given.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device must be 'auto', 'cpu' or an available device, got {device} but CUDA is not available")
    return device


class Trainer:
    r"""Runs a recipe's ``training_step`` over a data loader, with the chores of a real run.

    Every training step is ``recipe.training_step(x, y, generator=trainer.generator)``
    on a batch moved to the training device. Metrics stay tensors: they are summed
    on the device and read (one host sync) every ``refresh_every`` steps, when the
    progress bar shows their means over the window (loss terms, accuracy, energy
    gap) and ``history`` gets one row (also for the last steps of an epoch or a
    run). Nothing else syncs per step, except what
    callbacks and ``evaluate`` choose to read.

    Checkpoints (``<checkpoint_dir>/checkpoint-<step:08d>.pt``, the last
    ``keep_checkpoints`` kept) hold the recipe's ``state_dict`` (model and replay
    buffer), the optimizer's, the RNG states, the counters, the history and the
    settings. They are written at the end of every epoch, at the end of
    :meth:`fit`, and when training is interrupted (``KeyboardInterrupt``, which is
    then re-raised; a step cut short is redone after resuming). :meth:`resume`
    continues from one exactly: the data order of the interrupted epoch is
    replayed from the RNG states saved at its start.

    A :class:`~ebmlib.divergence.DivergenceGuard` watches every step (on the
    device) and is checked at each refresh and before each checkpoint: a
    checkpoint only ever holds a state that passed a check; a divergence
    restores the last good state, lowers the learning rate and restarts the
    buffer's chains.

    Launched by ``torchrun`` (after :func:`~ebmlib.distributed.init_distributed`),
    the Trainer trains on every process with the recipe's network in
    DistributedDataParallel (:func:`~ebmlib.distributed.distribute`), on GPU
    ``LOCAL_RANK`` for CUDA; process ``r`` draws from its own ``generator``
    (seed ``seed + r``), metrics are averaged over processes, only process 0
    shows progress, evaluates and writes checkpoints, and a time budget ends
    every process at the same step. Each process keeps its own replay buffer;
    checkpoints hold process 0's, which every process continues from after
    :meth:`resume` (the others with reseeded generators: a multi-process
    resume is not bit-exact).

    Parameters
    ----------
    recipe : EBM
        Anything with ``training_step(x, y=None, generator=None) -> dict`` of
        scalar tensors and an ``optimizer`` (e.g. :class:`~ebmlib.recipes.JEM`);
        moved to ``device`` here.
    device : {"auto", "cpu", "cuda"} or torch.device
    seed : int
        Seeds ``generator`` (every draw of the training steps) and the global
        torch RNG (the loader's shuffling, unless it has its own generator).
    checkpoint_dir : path-like, optional
        Where checkpoints go; none are written if ``None``.
    callbacks : sequence of callables
        ``callback(trainer, metrics)`` after every step; ``metrics`` are tensors.
    evaluate : callable, optional
        ``evaluate(recipe) -> dict[str, float]``, run (in eval mode) every
        ``eval_every`` steps and at the end of every epoch; results go to
        ``evaluations``.
    eval_every : int, optional
    progress : bool
        Show a tqdm progress bar.
    refresh_every : int
        Steps between metric reads (progress bar and ``history``).
    keep_checkpoints : int
        How many checkpoint files to keep.
    settings : mapping, optional
        Extra settings (numbers, strings) stored in every checkpoint, e.g. the
        command line of a run.
    divergence_guard : DivergenceGuard or bool
        ``True``: a default :class:`~ebmlib.divergence.DivergenceGuard`;
        ``False``: none.

    Attributes
    ----------
    step, epoch : int
        Steps and complete epochs done so far.
    generator : torch.Generator
        On the training device.
    divergence_guard : DivergenceGuard or None
    process : ProcessInfo
        Rank and world size (``(0, 0, 1)`` without ``torch.distributed``).
    history : list of dict
        One row of python floats per refresh: ``step``, ``epoch``,
        ``seconds_per_step``, ``elapsed_seconds`` and the means of the metrics.
    evaluations : list of dict
        ``step`` plus the results of each ``evaluate`` call.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.buffers import ReplayBuffer, UniformInit
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> from ebmlib.recipes import EBM
    >>> from ebmlib.samplers import Langevin
    >>> model = NetworkEnergy(MLP(2, 1, hidden=16))
    >>> recipe = EBM(model, Langevin(step_size=0.01, n_steps=5), ReplayBuffer(64, UniformInit((2,), -3, 3)),
    ...              torch.optim.Adam(model.parameters(), lr=1e-3))
    >>> trainer = Trainer(recipe, device="cpu", seed=0, progress=False, refresh_every=2)
    >>> history = trainer.fit([torch.randn(16, 2) for _ in range(4)], epochs=1)
    >>> trainer.step, [row["step"] for row in history]
    (4, [2.0, 4.0])
    """

    def __init__(
        self,
        recipe: EBM,
        device: str | torch.device = "auto",
        seed: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        callbacks: Sequence[Callback] = (),
        evaluate: Evaluate | None = None,
        eval_every: int | None = None,
        progress: bool = True,
        refresh_every: int = 10,
        keep_checkpoints: int = 3,
        settings: Mapping[str, Any] | None = None,
        divergence_guard: DivergenceGuard | bool = True,
    ) -> None:
        if refresh_every < 1:
            raise ValueError(f"refresh_every must be a positive number of steps, got {refresh_every}")
        if eval_every is not None and eval_every < 1:
            raise ValueError(f"eval_every must be a positive number of steps or None, got {eval_every}")
        if keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be a positive number of files, got {keep_checkpoints}")
        self.process = process_info()
        self.device = resolve_device(device)
        if self.process.world_size > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", self.process.local_rank)
        self.recipe = recipe.to(self.device)
        if self.process.world_size > 1:
            distribute(self.recipe, self.device)
        self.seed = seed
        torch.manual_seed(seed)
        self.generator = torch.Generator(self.device).manual_seed(seed + self.process.rank)
        if isinstance(divergence_guard, DivergenceGuard):
            self.divergence_guard: DivergenceGuard | None = divergence_guard
        else:
            self.divergence_guard = DivergenceGuard() if divergence_guard else None
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.callbacks = list(callbacks)
        self.evaluate = evaluate
        self.eval_every = eval_every
        self.progress = progress and self.process.rank == 0
        self.refresh_every = refresh_every
        self.keep_checkpoints = keep_checkpoints
        self.settings = dict(settings or {})
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.elapsed_seconds = 0.0
        self.history: list[dict[str, float]] = []
        self.evaluations: list[dict[str, float]] = []
        self._epoch_start_rng: dict[str, Tensor] = {}
        self._step_start_rng: dict[str, Tensor] | None = None
        self._last_saved_step = -1
        self._time_up = False
        self._max_seconds: float | None = None
        self._resumed_from: Path | None = None

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train_loader: Iterable[Any],
        epochs: int | None = None,
        max_steps: int | None = None,
        max_seconds: float | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``epochs`` epochs, ``max_steps`` steps or ``max_seconds`` seconds are done in all.

        The counts include what was done before a :meth:`resume`, so the same
        call continues a run where it stopped.

        Parameters
        ----------
        train_loader : iterable
            Yields ``x`` or ``(x, y)`` batches (e.g. a ``DataLoader``).
        epochs, max_steps : int, optional
            Totals; give at least one of them or ``max_seconds``.
        max_seconds : float, optional
            Training-time budget (checked after each step).

        Returns
        -------
        list of dict
            ``history``.

        Raises
        ------
        CheckpointError
            If ``checkpoint_dir`` already holds checkpoints and this trainer did
            not :meth:`resume` from one (they would be overwritten or pruned).
        """
        if epochs is None and max_steps is None and max_seconds is None:
            raise ValueError("fit needs a budget: pass epochs, max_steps or max_seconds")
        existing = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        if existing is not None and self._resumed_from is None:
            raise CheckpointError(
                f"checkpoint_dir {self.checkpoint_dir} already holds checkpoints of another run (latest: "
                f"{existing.name}); resume() from them, or give an empty folder, so that none is overwritten"
            )
        total = max_steps
        if total is None and epochs is not None and hasattr(train_loader, "__len__"):
            total = epochs * len(train_loader)  # type: ignore[arg-type]
        bar = tqdm(total=total, initial=self.step, disable=not self.progress, unit="step", dynamic_ncols=True)
        self.recipe.train()
        self._max_seconds = max_seconds
        self._check_divergence()  # the state to start from is the first good one
        try:
            while not self._done(epochs, max_steps, max_seconds):
                if self._run_epoch(train_loader, bar, max_steps, max_seconds):
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    self._evaluate(bar)
                    self.save()
        except KeyboardInterrupt:
            if self.checkpoint_dir is not None:
                if self._step_start_rng is not None:  # interrupted inside a step: it will be redone
                    restore_rng_states(self._step_start_rng, self.generator)
                saved = self.save(synchronize=False)
                if self.process.rank == 0:
                    bar.write(f"interrupted at step {self.step}: saved {saved}")
            raise
        finally:
            bar.close()
        self.save()
        return self.history

    def _done(self, epochs: int | None, max_steps: int | None, max_seconds: float | None) -> bool:
        return (
            (epochs is not None and self.epoch >= epochs)
            or (max_steps is not None and self.step >= max_steps)
            or self._out_of_time(max_seconds)
        )

    def _out_of_time(self, max_seconds: float | None) -> bool:
        """Whether the time budget is spent; with several processes, as agreed at the last refresh."""
        if max_seconds is None:
            return False
        return self._time_up if self.process.world_size > 1 else self.elapsed_seconds >= max_seconds

    def _run_epoch(self, loader: Iterable[Any], bar: Any, max_steps: int | None, max_seconds: float | None) -> bool:
        """Run the rest of the current epoch; ``True`` if it was completed."""
        generators = _loader_generators(loader)
        set_epoch = getattr(getattr(loader, "sampler", None), "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch)
        if self.batch_in_epoch == 0:
            self._epoch_start_rng = _generator_states(generators)
            batches = iter(loader)
        else:  # resumed mid-epoch: replay the epoch's data order, skip what was done
            current = _generator_states(generators)
            _set_generator_states(generators, self._epoch_start_rng)
            batches = iter(loader)
            for _ in range(self.batch_in_epoch):
                next(batches)
            # the checkpoint restored the global RNG to its state at the save; the loader's own generators
            # are not in it: they continue from the replay, as in a run that was never stopped
            _set_generator_states({"global": generators["global"]}, current)
        sums: dict[str, Tensor] = {}
        window_start, window_steps, completed, any_batch = self.elapsed_seconds, 0, False, False
        clock = time.perf_counter()  # training time counts data loading, steps and callbacks, not evaluation
        for batch in batches:
            any_batch = True
            self._step_start_rng = capture_rng_states(self.generator)
            x, y = self._to_device(batch)
            try:
                metrics = self.recipe.training_step(x, y, generator=self.generator)
            except (ValueError, RuntimeError):
                # A step on an already diverged state can fail (NaN chains fail the sampler's input check on
                # CPU): recover at once and go on with the next batch. Any other failure is the caller's.
                if self.divergence_guard is None or not self.divergence_guard.diverged():
                    raise
                self.divergence_guard.check(self.recipe, self.generator, self.step + 1, synchronize=False)
                metrics = {}
            self.step += 1
            self.batch_in_epoch += 1
            self._step_start_rng = None
            window_steps += 1
            for name, value in metrics.items():
                sums[name] = sums[name] + value.detach() if name in sums else value.detach().float()
            if self.divergence_guard is not None and metrics:
                self.divergence_guard.observe(self.recipe, metrics)
            for callback in self.callbacks:
                callback(self, metrics)
            if self.step % self.refresh_every == 0:
                self._check_divergence()
                clock = self._refresh(bar, sums, window_steps, window_start, clock)
                sums, window_start, window_steps = {}, self.elapsed_seconds, 0
            self.elapsed_seconds += time.perf_counter() - clock
            if self.eval_every is not None and self.step % self.eval_every == 0:
                self._evaluate(bar)
            clock = time.perf_counter()
            if (max_steps is not None and self.step >= max_steps) or self._out_of_time(max_seconds):
                break
        else:
            completed = True
            if not any_batch:
                raise ValueError(
                    f"train_loader yielded no batches in epoch {self.epoch}: the dataset is empty (or smaller than "
                    "one batch with drop_last=True)"
                )
        if window_steps:  # the last, partial window
            self._refresh(bar, sums, window_steps, window_start, time.perf_counter())
        return completed

    def _to_device(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        if isinstance(batch, Tensor):
            return batch.to(self.device, non_blocking=True), None
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            x, y = batch
            return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        raise TypeError(f"train_loader must yield x or (x, y) tensors, got {type(batch).__name__}")

    def _refresh(self, bar: Any, sums: dict[str, Tensor], steps: int, window_start: float, clock: float) -> float:
        """Read the window's metric means (the one host sync), record and show them; return the clock."""
        names = list(sums)
        means = all_reduce_mean(torch.stack([sums[n] for n in names]) / steps).tolist() if names else []
        now = time.perf_counter()
        self.elapsed_seconds += now - clock
        if self.process.world_size > 1:  # every process goes by the slowest one's clock
            elapsed = torch.tensor([self.elapsed_seconds], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(elapsed, op=torch.distributed.ReduceOp.MAX)
            self.elapsed_seconds = float(elapsed[0])
            self._time_up = self._max_seconds is not None and self.elapsed_seconds >= self._max_seconds
        seconds = self.elapsed_seconds - window_start
        row = {"step": float(self.step), "epoch": float(self.epoch), "seconds_per_step": seconds / steps}
        row["elapsed_seconds"] = self.elapsed_seconds
        row.update(zip(names, means, strict=True))
        self.history.append(row)
        shown = {_short_name(n): v for n, v in zip(names, means, strict=True) if _short_name(n)}
        bar.set_postfix({**shown, "s/it": seconds / steps}, refresh=False)
        bar.update(self.step - bar.n)
        return now

    def _check_divergence(self, synchronize: bool = True) -> None:
        if self.divergence_guard is not None:
            self.divergence_guard.check(self.recipe, self.generator, self.step, synchronize)

    def _evaluate(self, bar: Any) -> None:
        if self.evaluate is None or self.process.rank != 0:
            return
        self.recipe.eval()
        try:
            results = {"step": float(self.step), **{k: float(v) for k, v in self.evaluate(self.recipe).items()}}
        finally:
            self.recipe.train()
        self.evaluations.append(results)
        bar.write(" ".join(f"{k}={v:.4g}" for k, v in results.items()))

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds (tensors, numbers, strings and containers only)."""
        return {
            "recipe": self.recipe.state_dict(),
            "optimizer": self.recipe.optimizer.state_dict(),
            "rng": capture_rng_states(self.generator),
            "epoch_start_rng": self._epoch_start_rng,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "elapsed_seconds": self.elapsed_seconds,
            "history": self.history,
            "evaluations": self.evaluations,
            "settings": {"seed": self.seed, "device": str(self.device), "world_size": self.process.world_size,
                         **self.settings},
            "divergence_guard": None if self.divergence_guard is None else self.divergence_guard.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (model, buffer, optimizer, RNGs, counters, history)."""
        self.recipe.load_state_dict(state["recipe"])
        self.recipe.optimizer.load_state_dict(state["optimizer"])
        restore_rng_states(state["rng"], self.generator)
        self._epoch_start_rng = dict(state["epoch_start_rng"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.elapsed_seconds = float(state["elapsed_seconds"])
        self.history = list(state["history"])
        self.evaluations = list(state["evaluations"])
        if self.divergence_guard is not None and state.get("divergence_guard") is not None:
            self.divergence_guard.load_state_dict(state["divergence_guard"])
        if self.process.rank > 0:  # the checkpoint holds process 0's stream: take another one
            self.generator.manual_seed(self.seed + self.process.rank + 1_000_003 * self.step)
        self._last_saved_step = self.step

    def save(self, synchronize: bool = True) -> Path | None:
        """Check for divergence, then write a checkpoint for the current step (once per step) and prune old ones.

        Only a state that passed the divergence check is written, and only by
        process 0. ``synchronize=False`` skips combining the check over
        processes (when they can't all take part, as after Ctrl-C).

        Returns
        -------
        Path or None
            The checkpoint's path (``None`` without ``checkpoint_dir``).
        """
        if self.checkpoint_dir is None:
            return None
        path = checkpoint_path(self.checkpoint_dir, self.step)
        if self._last_saved_step != self.step or (self.process.world_size == 1 and not path.exists()):
            self._check_divergence(synchronize)
            if self.process.rank == 0:
                save_checkpoint(path, self.state_dict())
                prune_checkpoints(self.checkpoint_dir, self.keep_checkpoints)
            self._last_saved_step = self.step
        return path

    def resume(self, path_or_dir: str | os.PathLike[str]) -> Path:
        """Load a checkpoint file, or the latest one in a folder; the next :meth:`fit` continues from it.

        Raises
        ------
        CheckpointError
            If there is no checkpoint or it can't be read (the message names the file).
        """
        path = Path(path_or_dir)
        if not path.is_file():
            latest = latest_checkpoint(path)
            if latest is None:
                raise CheckpointError(f"no checkpoint-<step>.pt files in {path} to resume from")
            path = latest
        state = load_checkpoint(path, map_location=self.device)
        missing = {"recipe", "optimizer", "rng", "step", "epoch"} - set(state)
        if missing:
            raise CheckpointError(f"checkpoint file {path} is not a Trainer checkpoint (missing {sorted(missing)})")
        mismatches = _state_mismatches(state["recipe"], self.recipe.state_dict())
        if mismatches:
            raise CheckpointError(f"checkpoint file {path} does not fit this recipe: {'; '.join(mismatches[:5])}")
        self.load_state_dict(state)
        self._resumed_from = path
        return path


def _state_mismatches(saved: Mapping[str, Any], expected: Mapping[str, Tensor]) -> list[str]:
    """What keeps ``saved`` from loading into a module whose ``state_dict`` is ``expected`` (nothing: ``[]``)."""
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


def _short_name(metric: str) -> str:
    """Progress-bar label of a metric: loss terms, accuracy and energy gaps only."""
    if metric == "loss":
        return "loss"
    if metric.startswith("loss/"):
        return metric[len("loss/"):]
    if metric.endswith("accuracy"):
        return "acc"
    if metric.endswith("energy_gap"):
        return "gap" + ("|y" if "given_y" in metric or metric.startswith("conditional") else "")
    return ""


def _loader_generators(loader: Iterable[Any]) -> dict[str, torch.Generator]:
    """The RNGs that decide a loader's data order: the global one and any of its own."""
    found: dict[str, torch.Generator] = {"global": torch.default_generator}
    for name, owner in (("loader", loader), ("sampler", getattr(loader, "sampler", None))):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found.values()):
            found[name] = generator
    return found


def _generator_states(generators: Mapping[str, torch.Generator]) -> dict[str, Tensor]:
    return {name: g.get_state() for name, g in generators.items()}


def _set_generator_states(generators: Mapping[str, torch.Generator], states: Mapping[str, Tensor]) -> None:
    for name, generator in generators.items():
        if name in states:
            generator.set_state(states[name])
