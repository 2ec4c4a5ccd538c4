"""Run any :class:`~ebmlib.recipes.Recipe` under PyTorch Lightning: a thin ``LightningModule`` adapter.

Needs the ``lightning`` package (``pip install "ebmlib[lightning]"``), imported
when this module is.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import lightning
import torch
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy, Strategy
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import CheckpointError
from ..recipes import Recipe
from .distributed import DataParallel, DistributedError, gather_to_main, process_info
from .loop import unpack_batch
from .resume import capture_rng_states, process_local_state, restore_rng_states

__all__ = ["RecipeModule"]

_SUPPORTED = "one device (SingleDeviceStrategy) or DDP: strategy='ddp', 'ddp_spawn' or a DDPStrategy(...)"
_CHECKPOINT_KEY = "ebmlib"
"""Where a Lightning checkpoint holds every process's own state (chains, random streams)."""


class RecipeModule(lightning.LightningModule):
    """A ``lightning.LightningModule`` whose training step is the recipe's, for users with a Lightning stack.

    Lightning's ``Trainer`` then brings its loggers, callbacks, checkpoints
    and accelerators; the recipe keeps doing its own optimisation (manual
    optimisation: ``automatic_optimization = False``), exactly as under
    :class:`~ebmlib.training.Trainer`:

    - ``configure_optimizers`` returns :meth:`~ebmlib.recipes.Recipe.optimizers`;
    - ``training_step(batch)`` runs ``recipe.training_step(x, y, generator)``
      on batches ``x``, ``[x]`` or ``(x, y)`` and logs its metrics with
      ``log_dict`` (prefixed by ``log_prefix``; process 0's under DDP);
    - every process draws from its own ``generator``, seeded ``seed + global_rank``
      when fitting starts (or restored from the checkpoint being resumed);
    - each of the recipe's optimizer steps counts as one of Lightning's
      ``global_step`` (Lightning counts manual steps only through its own
      optimizer wrappers, which the recipe does not call), so ``max_steps``
      and logging intervals mean optimizer steps as usual.

    **Strategies.** One device (``strategy="auto"`` with ``devices=1``) and
    DDP (``strategy="ddp"`` or ``"ddp_spawn"``, any ``devices`` and
    ``num_nodes``). Under DDP the recipe's
    :meth:`~ebmlib.recipes.Recipe.data_parallel_modules` stay equal on every
    process: the recipe calls ``backward`` itself, which DDP does not see under
    manual optimisation, so their gradients are averaged by
    :class:`~ebmlib.training.distributed.DataParallel` before every optimizer
    step, as under ebmlib's Trainer; DDP is told to leave everything else (the
    chains) alone, so each process keeps its own. Any other strategy (FSDP,
    DeepSpeed, model parallel, XLA) shards or wraps what the recipe's own
    optimizers step, and is refused with a ``ValueError`` at ``setup``.

    **Checkpoints.** The recipe's ``state_dict`` is the module's (under the
    ``recipe.`` prefix) and Lightning saves its optimizers; the module adds
    every process's own chains and random states (its generator, the global
    torch RNG, CUDA's) under the checkpoint's ``"ebmlib"`` key (gathered from
    all processes: call ``trainer.save_checkpoint`` on all of them, as Lightning
    asks). ``trainer.fit(..., ckpt_path=...)`` gives each process its own back,
    so a resume with as many processes continues bit for bit like a run that
    was never stopped, from a checkpoint at the end of an epoch
    (``ModelCheckpoint``'s default). From the middle of an epoch it is not
    exact with a plain ``DataLoader``: Lightning starts that epoch's data
    again from its first batch (and warns). A loader shuffled by the global
    torch RNG resumes its order; one with its own ``generator=`` does not
    (Lightning does not save that generator).

    Parameters
    ----------
    recipe : Recipe
    seed : int
        Seed of the generator of the training steps (process ``r`` uses ``seed + r``).
    log_prefix : str
        Prefix of the logged metric names.

    Attributes
    ----------
    generator : torch.Generator or None
        This process's source of every random draw of the training steps; made when fitting starts.
    parallel : ebmlib.training.distributed.DataParallel or None
        The gradient averaging of the data-parallel modules, while fitting on several processes.

    Examples
    --------
    >>> import lightning, torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from ebmlib.buffers import ReplayBuffer, UniformInit
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> from ebmlib.recipes import EBM
    >>> from ebmlib.samplers import Langevin
    >>> model = NetworkEnergy(MLP(2, 1, hidden=8))
    >>> recipe = EBM(model, Langevin(step_size=0.01, n_steps=2), ReplayBuffer(32, UniformInit((2,))),
    ...              torch.optim.Adam(model.parameters(), lr=1e-3))
    >>> trainer = lightning.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
    ...                             enable_progress_bar=False, enable_model_summary=False)
    >>> trainer.fit(RecipeModule(recipe), DataLoader(TensorDataset(torch.randn(64, 2)), batch_size=8))
    >>> trainer.global_step
    3
    """

    def __init__(self, recipe: Recipe, seed: int = 0, log_prefix: str = "train/") -> None:
        super().__init__()
        if not isinstance(recipe, Recipe):
            raise TypeError(f"recipe must implement ebmlib.recipes.Recipe, got {type(recipe).__name__}")
        self.recipe = recipe
        self.seed = seed
        self.log_prefix = log_prefix
        self.automatic_optimization = False
        self.generator: torch.Generator | None = None
        self.parallel: DataParallel | None = None
        self._hooks: list[Any] = []
        self._resumed_rng: dict[str, Tensor] | None = None

    def configure_optimizers(self) -> Any:
        return self.recipe.optimizers()

    def setup(self, stage: str) -> None:
        """Refuse an unsupported strategy; have DDP leave alone what is not data-parallel (the chains)."""
        _check_strategy(self.trainer.strategy)
        shared = {id(t) for m in self.recipe.data_parallel_modules() for t in (*m.parameters(), *m.buffers())}
        own = [name for name, t in (*self.named_parameters(), *self.named_buffers()) if id(t) not in shared]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, own)

    def on_fit_start(self) -> None:
        self._release()  # what a failed fit may have left
        self.generator = torch.Generator(self.device).manual_seed(self.seed + self.global_rank)
        if self._resumed_rng is not None:
            restore_rng_states(self._resumed_rng, self.generator)
            self._resumed_rng = None
        if self.trainer.world_size > 1:
            self.parallel = DataParallel(self.recipe)
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress

        def count_step(*_: Any) -> None:
            progress.increment_ready()
            progress.increment_completed()

        self._hooks = [optimizer.register_step_post_hook(count_step) for optimizer in self.recipe.optimizers()]

    def on_fit_end(self) -> None:
        self._release()

    def teardown(self, stage: str) -> None:
        self._release()

    def _release(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if self.parallel is not None:
            self.parallel.close()
            self.parallel = None

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = unpack_batch(batch, self.device)
        if self.parallel is not None:
            self.parallel.begin_step()
        try:
            metrics: Mapping[str, Tensor] = self.recipe.training_step(x, y, generator=self.generator)
        except Exception as error:
            if self.parallel is not None and not isinstance(error, DistributedError):
                self.parallel.abandon_step()  # the others wait for this step's gradients: tell them it failed
            raise
        self.log_dict({self.log_prefix + name: value for name, value in metrics.items()}, batch_size=x.shape[0])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add every process's own chains and random states (a collective under DDP: all processes save)."""
        own = {"rng": capture_rng_states(self.generator),
               "local_state": {name: value.cpu() for name, value in process_local_state(self.recipe).items()}}
        processes = gather_to_main(own, "gathering every process's chains and random states for a checkpoint")
        world_size = process_info().world_size if self._trainer is None else self._trainer.world_size
        checkpoint[_CHECKPOINT_KEY] = {"world_size": world_size, "processes": processes}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put this process's own chains in the state to load, and keep its random states for ``on_fit_start``."""
        saved = checkpoint.get(_CHECKPOINT_KEY)
        trainer = self._trainer  # None when loaded outside a Trainer (load_from_checkpoint): process 0's state
        if trainer is None:
            return
        if saved is None:
            warnings.warn("the checkpoint holds no process's own random states (an older RecipeModule wrote it): "
                          "every process resumes process 0's chains with a freshly seeded generator, so the run does "
                          "not continue exactly as it would have", stacklevel=2)
            return
        if saved["world_size"] != trainer.world_size:
            raise CheckpointError(
                f"the checkpoint was written by {saved['world_size']} processes and this run has {trainer.world_size}: "
                "each process resumes its own chains and random streams, so resume with as many (devices x num_nodes "
                f"= {saved['world_size']}, e.g. lightning.Trainer(devices={saved['world_size']}, num_nodes=1))"
            )
        own = saved["processes"][trainer.global_rank]
        checkpoint["state_dict"].update({f"recipe.{name}": value for name, value in own["local_state"].items()})
        self._resumed_rng = own["rng"]


def _check_strategy(strategy: Strategy) -> None:
    """Raise a ``ValueError`` naming the supported strategies unless ``strategy`` is one of them."""
    if type(strategy) not in (SingleDeviceStrategy, DDPStrategy):  # subclasses (DeepSpeedStrategy) change what steps
        raise ValueError(
            f"RecipeModule runs on {_SUPPORTED}; got {type(strategy).__name__}. The recipe steps its own optimizers "
            "and keeps chains per process, which sharding strategies (FSDP, DeepSpeed, model parallel) and XLA do not "
            "support; for more processes use lightning.Trainer(devices=N, num_nodes=M, strategy='ddp')"
        )
