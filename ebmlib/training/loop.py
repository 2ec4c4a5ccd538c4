"""The training loop: budgets, metric windows and callbacks around any recipe's ``training_step``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from ..recipes import Recipe
from .budget import Budget, MetricWindow, Stopwatch
from .callbacks import Callback, Evaluation, StepFunction, TrainerView
from .distributed import (
    DataParallel,
    DistributedError,
    all_reduce_max,
    barrier,
    gather_to_main,
    process_info,
)
from .divergence import DivergenceGuard
from .progress import ProgressBar
from .resume import (
    LoaderReplay,
    capture_rng_states,
    find_checkpoint,
    process_state,
    read_trainer_checkpoint,
    restore_rng_states,
)
from .schedules import Constant, LearningRateSchedule

__all__ = ["Trainer", "resolve_device", "unpack_batch"]

logger = logging.getLogger("ebmlib")


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


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` where ``device`` computes bfloat16 natively, else ``"full"``; others as given.

    Native bfloat16: a CUDA device that supports it, or a CPU with AVX512-BF16 or AMX
    instructions. Elsewhere (say, a CPU with AVX2 only) bfloat16 is emulated and a
    sampler's ``precision="bf16"`` runs several times slower than float32, so
    ``"auto"`` keeps float32 there.

    Examples
    --------
    >>> resolve_precision("full", "cpu"), resolve_precision("auto", "cpu") in ("bf16", "full")
    ('full', True)
    """
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "full"
    native = [getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported",
                                                                         "_is_amx_tile_supported")]
    return "bf16" if device.type == "cpu" and any(native) else "full"


def unpack_batch(batch: Any, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """``x`` or ``(x, y)`` on ``device`` from a batch ``x``, ``[x]`` or ``(x, y)`` (as ``TensorDataset`` gives).

    Examples
    --------
    >>> x, y = unpack_batch([torch.zeros(2, 3)], torch.device("cpu"))  # DataLoader(TensorDataset(x))
    >>> x.shape, y
    (torch.Size([2, 3]), None)
    """
    if isinstance(batch, (tuple, list)) and len(batch) in (1, 2) and all(isinstance(t, Tensor) for t in batch):
        x, y = batch[0], (batch[1] if len(batch) == 2 else None)
    elif isinstance(batch, Tensor):
        x, y = batch, None
    else:
        kind = f"{type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise TypeError(f"train_loader must yield x, (x,) or (x, y) tensors, got {kind}")
    return x.to(device, non_blocking=True), None if y is None else y.to(device, non_blocking=True)


class Trainer:
    r"""Runs any :class:`~ebmlib.recipes.Recipe` over a data loader, with the chores of a real run.

    Every training step is ``recipe.training_step(x, y, generator=trainer.generator)``
    on a batch moved to the device (batches ``x``, ``[x]`` or ``(x, y)``).
    The trainer itself keeps only the budget, the metric windows and the
    checkpoints; everything else is a :class:`~ebmlib.training.Callback`
    with named hooks and its own checkpointed state:

    - the learning rate's one writer, ``lr_schedule`` (default :class:`~ebmlib.training.Constant`);
    - a :class:`~ebmlib.training.DivergenceGuard` (on by default), checked at
      every sync point: a checkpoint only ever holds a state that passed;
    - evaluation (``evaluate``, :class:`~ebmlib.training.Evaluation`);
    - a progress bar (:class:`~ebmlib.training.ProgressBar`);
    - whatever is in ``callbacks`` (plain functions ``f(trainer, metrics)``
      run after every step).

    Metrics stay tensors: they are summed on the device and read (one host
    sync) every ``refresh_every`` steps, when ``history`` gets one row of their
    means (also for the last steps of an epoch or a run).

    Checkpoints (``<checkpoint_dir>/checkpoint-<step:08d>.pt``, the last
    ``keep_checkpoints`` kept) hold the recipe's ``state_dict``, its
    optimizers', the RNG states, the counters, the history, every callback's
    state and the settings. They are written at the end of every epoch, at the
    end of :meth:`fit`, and when training is interrupted by ``KeyboardInterrupt``
    (re-raised; a step cut short is redone after resuming; one process only).
    :meth:`resume` continues from one exactly.

    Launched by ``torchrun`` (in :func:`~ebmlib.training.distributed.distributed`),
    the Trainer trains on every process (on GPU ``LOCAL_RANK`` for CUDA), keeping
    the recipe's data-parallel modules equal
    (:class:`~ebmlib.training.distributed.DataParallel`); process ``r`` draws
    from its own ``generator`` (seed ``seed + r``) and keeps its own chains.
    Metrics are averaged over processes; the divergence check, the time budget
    and the learning rate are decided jointly; only process 0 shows progress,
    evaluates and writes checkpoints, which hold every process's own state
    (chains, RNGs), so a resume with as many processes is exact on each.

    Parameters
    ----------
    recipe : Recipe
        Moved to ``device`` here.
    device : {"auto", "cpu", "cuda"} or torch.device
    seed : int
        Seeds ``generator`` (every draw of the training steps) and the global
        torch RNG (the loader's shuffling, unless it has its own generator).
    checkpoint_dir : path-like, optional
        Where checkpoints go; none are written if ``None``.
    callbacks : sequence of Callback or callable
        Hooks into the run; a plain function ``f(trainer, metrics)`` runs after every step.
    evaluate : callable, optional
        ``evaluate(recipe) -> dict[str, float]``, run (in eval mode) every
        ``eval_every`` steps and at the end of every epoch, once for a step
        that is both; results go to ``evaluations``.
    eval_every : int, optional
    progress : bool
        Show a :class:`~ebmlib.training.ProgressBar`.
    refresh_every : int
        Steps between metric reads (``history``, progress, divergence checks).
    keep_checkpoints : int
        How many checkpoint files to keep.
    settings : mapping, optional
        Extra settings (numbers, strings) stored in every checkpoint.
    divergence_guard : DivergenceGuard or bool
        ``True``: a default :class:`~ebmlib.training.DivergenceGuard`; ``False``: none.
    lr_schedule : LearningRateSchedule, optional
        The learning rates' one writer (default :class:`~ebmlib.training.Constant`).

    Attributes
    ----------
    step, epoch : int
        Steps and complete epochs done so far.
    generator : torch.Generator
        On the training device.
    process : ProcessInfo
        Rank and world size (``(0, 0, 1)`` without ``torch.distributed``).
    clock : Stopwatch
        Training time (not evaluations or checkpoint writes).
    history : list of dict
        One row of floats per refresh: ``step``, ``epoch``, ``seconds_per_step``,
        ``elapsed_seconds``, ``lr`` and the means of the metrics.
    callbacks : list of Callback
        All of them, in the order their hooks run.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from ebmlib.buffers import ReplayBuffer, UniformInit
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> from ebmlib.recipes import EBM
    >>> from ebmlib.samplers import Langevin
    >>> model = NetworkEnergy(MLP(2, 1, hidden=16))
    >>> recipe = EBM(model, Langevin(step_size=0.01, n_steps=5), ReplayBuffer(64, UniformInit((2,), -3, 3)),
    ...              torch.optim.Adam(model.parameters(), lr=1e-3))
    >>> trainer = Trainer(recipe, device="cpu", seed=0, progress=False, refresh_every=2)
    >>> history = trainer.fit(DataLoader(TensorDataset(torch.randn(64, 2)), batch_size=16), epochs=1)
    >>> trainer.step, [row["step"] for row in history]
    (4, [2.0, 4.0])
    """

    def __init__(
        self,
        recipe: Recipe,
        device: str | torch.device = "auto",
        seed: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        callbacks: Sequence[Callback | Callable[[TrainerView, Mapping[str, Tensor]], None]] = (),
        evaluate: Callable[[Recipe], Mapping[str, Any]] | None = None,
        eval_every: int | None = None,
        progress: bool = True,
        refresh_every: int = 10,
        keep_checkpoints: int = 3,
        settings: Mapping[str, Any] | None = None,
        divergence_guard: DivergenceGuard | bool = True,
        lr_schedule: LearningRateSchedule | None = None,
    ) -> None:
        if not isinstance(recipe, Recipe):
            raise TypeError(f"recipe must implement ebmlib.recipes.Recipe, got {type(recipe).__name__}")
        if refresh_every < 1:
            raise ValueError(f"refresh_every must be a positive number of steps, got {refresh_every}")
        if keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be a positive number of files, got {keep_checkpoints}")
        self.process = process_info()
        self.device = resolve_device(device)
        if self.process.world_size > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", self.process.local_rank)
        self.recipe = recipe.to(self.device)
        self.seed = seed
        torch.manual_seed(seed)
        self.generator = torch.Generator(self.device).manual_seed(seed + self.process.rank)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.refresh_every = refresh_every
        self.keep_checkpoints = keep_checkpoints
        self.settings = dict(settings or {})
        self.lr_schedule = Constant() if lr_schedule is None else lr_schedule
        guard = DivergenceGuard() if divergence_guard is True else divergence_guard or None
        self.divergence_guard: DivergenceGuard | None = guard
        self.evaluation = None if evaluate is None else Evaluation(evaluate, eval_every)
        mine = [c for c in (guard, self.lr_schedule, self.evaluation) if c is not None]
        given = [c if isinstance(c, Callback) else StepFunction(c) for c in callbacks]
        self.callbacks: list[Callback] = [*given, *mine, *([ProgressBar()] if progress else [])]
        keys = [c.state_key for c in self.callbacks]
        if len(set(keys)) != len(keys):
            raise ValueError(f"callbacks need distinct state_key values (they name their state in checkpoints), "
                             f"got {sorted(keys)}")
        self.step = self.epoch = self.batch_in_epoch = 0
        self.clock = Stopwatch()
        self._agreed_seconds = 0.0
        self.history: list[dict[str, float]] = []
        self.budget = Budget(None, None, 0.0)
        self.replay = LoaderReplay()
        self.parallel: DataParallel | None = None
        self._step_start_rng: dict[str, Tensor] | None = None
        self._last_saved_step = -1
        self._resumed_from: Path | None = None

    @property
    def evaluations(self) -> list[dict[str, float]]:
        """``step`` plus the results of each ``evaluate`` call."""
        return self.evaluation.results if self.evaluation is not None else []

    @property
    def elapsed_seconds(self) -> float:
        """Training time so far; with several processes, the slowest one's at the last refresh (agreed by all)."""
        return self.clock.seconds if self.process.world_size == 1 else self._agreed_seconds

    def summary(self) -> dict[str, Any]:
        """What a run's report states of its training: ``steps``, ``epochs``, ``training_seconds``,
        ``divergence_recoveries`` and ``device``.

        Examples
        --------
        >>> import torch
        >>> from ebmlib import EBM, Langevin, ReplayBuffer, UniformInit
        >>> from ebmlib.models import MLP, NetworkEnergy
        >>> model = NetworkEnergy(MLP(2, 1))
        >>> buffer = ReplayBuffer(16, UniformInit((2,)))
        >>> recipe = EBM(model, Langevin(0.1, n_steps=2), buffer, torch.optim.Adam(model.parameters()))
        >>> Trainer(recipe, device="cpu", progress=False).summary()
        {'steps': 0, 'epochs': 0, 'training_seconds': 0.0, 'divergence_recoveries': 0, 'device': 'cpu'}
        """
        return {"steps": self.step, "epochs": self.epoch, "training_seconds": self.elapsed_seconds,
                "divergence_recoveries": self.divergence_guard.recoveries if self.divergence_guard else 0,
                "device": str(self.device)}

    def budget_spent(self) -> float:
        """The fraction of the current ``fit``'s budget used (the same on every process)."""
        return self.budget.spent(self.step, self.elapsed_seconds)

    def notify_evaluation(self, results: Mapping[str, float]) -> None:
        """Pass an evaluation's results to every callback's ``on_evaluation``."""
        self._dispatch("on_evaluation", results)

    def _dispatch(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

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
            Yields ``x``, ``[x]`` or ``(x, y)`` batches (e.g. a ``DataLoader``).
        epochs, max_steps : int, optional
            Totals; give at least one of them or ``max_seconds``.
        max_seconds : float, optional
            Training-time budget (checked after each step; under several
            processes, by the slowest one's clock at the last refresh).

        Returns
        -------
        list of dict
            ``history``.

        Raises
        ------
        CheckpointError
            If ``checkpoint_dir`` already holds checkpoints and this trainer did
            not :meth:`resume` from one (they would be overwritten or pruned).
        DistributedError
            If another process died or hung (after the process group's timeout).
        """
        try:
            steps_per_epoch: int | None = len(train_loader)  # type: ignore[arg-type]
        except TypeError:  # an iterable without a length
            steps_per_epoch = None
        self.budget = Budget(epochs, max_steps, max_seconds, steps_per_epoch)
        existing = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        if existing is not None and self._resumed_from is None:
            raise CheckpointError(
                f"checkpoint_dir {self.checkpoint_dir} already holds checkpoints of another run (latest: "
                f"{existing.name}); resume() from them, or give an empty folder, so that none is overwritten"
            )
        self.recipe.train()
        self.parallel = DataParallel(self.recipe) if self.process.world_size > 1 else None
        try:
            self._dispatch("on_fit_start")
            self._dispatch("on_sync")  # the state to start from is the first good one
            self.clock.start()
            while not self._exhausted():
                if self._run_epoch(train_loader):
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    self._dispatch("on_epoch_end")
                    self.save()
            self.save()
        except KeyboardInterrupt:
            self._save_interrupted()
            raise
        except DistributedError as error:
            last = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir is not None else None
            raise DistributedError(f"training stopped at step {self.step}: {error}; the last checkpoint, "
                                   f"{last or 'none'}, is intact") from error
        finally:
            self.clock.stop()
            if self.parallel is not None:
                self.parallel.close()
                self.parallel = None
            self._dispatch("on_fit_end")
        return self.history

    def _exhausted(self) -> bool:
        return self.budget.exhausted(self.step, self.epoch, self.elapsed_seconds)

    def _run_epoch(self, loader: Iterable[Any]) -> bool:
        """Run the rest of the current epoch; ``True`` if it was completed."""
        resumed_mid_epoch = self.batch_in_epoch > 0
        window = MetricWindow(self.clock.seconds)
        completed, any_batch = True, False
        for batch in self.replay.batches(loader, self.epoch, self.batch_in_epoch):
            any_batch = True
            x, y = unpack_batch(batch, self.device)
            self._step_start_rng = capture_rng_states(self.generator)
            metrics = self._training_step(x, y)
            self._step_start_rng = None
            self.step += 1
            self.batch_in_epoch += 1
            window.add(metrics)
            self._dispatch("on_step_end", metrics)
            if self.step % self.refresh_every == 0:
                self._refresh(window)
                window = MetricWindow(self.clock.seconds)
            if self._exhausted():
                completed = False
                break
        if not any_batch and not resumed_mid_epoch:
            raise ValueError(
                f"train_loader yielded no batches in epoch {self.epoch}: the dataset is empty (or smaller than one "
                "batch with drop_last=True)"
            )
        if window.steps:  # the last, partial window
            self._refresh(window)
        return completed

    def _training_step(self, x: Tensor, y: Tensor | None) -> Mapping[str, Tensor]:
        """One step of the recipe; a failure is handled by the callbacks (jointly over processes) or raised."""
        if self.parallel is not None:
            self.parallel.begin_step()
        try:
            return self.recipe.training_step(x, y, generator=self.generator)
        except Exception as error:
            if isinstance(error, DistributedError):
                raise
            if self.parallel is not None:
                self.parallel.abandon_step()  # the others may wait for this step's gradients
            if any(callback.on_step_error(self, error) for callback in self.callbacks):
                return {}
            raise

    def _refresh(self, window: MetricWindow) -> None:
        """Sync point: check the state, read the window's means, agree on the clock, record a history row."""
        self._dispatch("on_sync")
        means = window.means()
        if self.process.world_size > 1:  # every process goes by the slowest one's clock
            slowest = all_reduce_max(torch.tensor([self.clock.seconds], dtype=torch.float64, device=self.device),
                                     "agreeing on the training time")
            self.clock.seconds = self._agreed_seconds = float(slowest[0])
        seconds = self.elapsed_seconds - window.start_seconds
        row = {"step": float(self.step), "epoch": float(self.epoch), "seconds_per_step": seconds / window.steps,
               "elapsed_seconds": self.elapsed_seconds}
        lrs = self.lr_schedule.get_last_lr()
        if lrs:
            row["lr"] = lrs[0]
        row.update(means)
        self.history.append(row)
        self._dispatch("on_log", row)

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds (tensors, numbers, strings and containers only).

        Under several processes it gathers every process's own state (a
        collective: all processes call it) and only process 0's result holds
        them all (``processes``).
        """
        own = process_state(self.recipe, self.generator, self.replay, with_local_state=self.process.rank > 0)
        processes = gather_to_main(own, "gathering every process's state for a checkpoint") or []
        return {
            "recipe": self.recipe.state_dict(),
            "optimizers": [optimizer.state_dict() for optimizer in self.recipe.optimizers()],
            "processes": processes,
            "world_size": self.process.world_size,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "elapsed_seconds": self.clock.seconds,
            "history": self.history,
            "callbacks": {c.state_key: c.state_dict() for c in self.callbacks},
            "settings": {"seed": self.seed, "device": str(self.device), "world_size": self.process.world_size,
                         **self.settings},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`: this process's part of it (model, chains, optimizers, RNGs, counters)."""
        own = state["processes"][self.process.rank]
        self.recipe.load_state_dict({**state["recipe"], **own["local_state"]})
        for optimizer, saved in zip(self.recipe.optimizers(), state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        restore_rng_states(own["rng"], self.generator)
        self.replay.load_state_dict(own["loader"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.clock.seconds = self._agreed_seconds = float(state["elapsed_seconds"])
        self.history = list(state["history"])
        saved_callbacks = state["callbacks"]
        for callback in self.callbacks:
            if callback.state_key in saved_callbacks:
                callback.load_state_dict(saved_callbacks[callback.state_key])
        self._last_saved_step = self.step

    def save(self) -> Path | None:
        """Check the state (``on_sync``), then write a checkpoint for the current step (once) and prune old ones.

        Only a state that passed the divergence check is written, and only by
        process 0 (to a folder all processes can read); every process must call
        it together, and it returns once the file is written.

        Returns
        -------
        Path or None
            The checkpoint's path (``None`` without ``checkpoint_dir``).
        """
        if self.checkpoint_dir is None:
            return None
        path = checkpoint_path(self.checkpoint_dir, self.step)
        if self._last_saved_step == self.step and (self.process.world_size > 1 or path.exists()):
            return path
        with self.clock.paused():
            self._dispatch("on_sync")
            state = self.state_dict()
            try:
                if self.process.rank == 0:
                    save_checkpoint(path, state)
                    prune_checkpoints(self.checkpoint_dir, self.keep_checkpoints)
            finally:
                if self.process.world_size > 1:  # when save returns, every process can read the file
                    barrier("waiting for process 0 to write the checkpoint")
        self._last_saved_step = self.step
        self._dispatch("on_save", path)
        return path

    def _save_interrupted(self) -> None:
        if self.checkpoint_dir is None:
            return
        if self.process.world_size > 1:  # the processes stop at different points: no joint checkpoint is possible
            logger.warning("interrupted at step %d: resume from the last checkpoint, %s", self.step,
                           latest_checkpoint(self.checkpoint_dir))
            return
        if self._step_start_rng is not None:  # interrupted inside a step: it will be redone
            restore_rng_states(self._step_start_rng, self.generator)
        logger.warning("interrupted at step %d: saved %s", self.step, self.save())

    def resume(self, path_or_dir: str | os.PathLike[str]) -> Path:
        """Load a checkpoint file, or the latest one in a folder; the next :meth:`fit` continues from it.

        Raises
        ------
        CheckpointError
            If there is no checkpoint, it can't be read, it is not a Trainer
            checkpoint, it does not fit the recipe, or it was written by another
            number of processes (the message names the file).
        """
        path = find_checkpoint(path_or_dir)
        state = read_trainer_checkpoint(path, self.recipe, self.process.world_size, self.device)
        self.load_state_dict(state)
        self._resumed_from = path
        return path

