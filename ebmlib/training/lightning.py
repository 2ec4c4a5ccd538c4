"""Run any :class:`~ebmlib.recipes.Recipe` under PyTorch Lightning: a thin ``LightningModule`` adapter.

Needs the ``lightning`` package (``pip install "ebmlib[lightning]"``), imported
when this module is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning
import torch
from torch import Tensor

from ..recipes import Recipe
from .loop import unpack_batch

__all__ = ["RecipeModule"]


class RecipeModule(lightning.LightningModule):
    """A ``lightning.LightningModule`` whose training step is the recipe's, for users with a Lightning stack.

    Lightning's ``Trainer`` then brings its loggers, callbacks, checkpoints
    and accelerators; the recipe keeps doing its own optimisation (manual
    optimisation: ``automatic_optimization = False``), exactly as under
    :class:`~ebmlib.training.Trainer`:

    - ``configure_optimizers`` returns :meth:`~ebmlib.recipes.Recipe.optimizers`;
    - ``training_step(batch)`` runs ``recipe.training_step(x, y, generator)``
      on batches ``x``, ``[x]`` or ``(x, y)`` and logs its metrics with
      ``log_dict`` (prefixed by ``log_prefix``);
    - every process draws from its own generator, seeded ``seed + global_rank``
      when fitting starts;
    - each of the recipe's optimizer steps counts as one of Lightning's
      ``global_step`` (Lightning counts manual steps only through its own
      optimizer wrappers, which the recipe does not call), so ``max_steps``
      and logging intervals mean optimizer steps as usual.

    Only the Recipe protocol is used. The recipe's ``state_dict`` is the
    module's (under the ``recipe.`` prefix), so Lightning checkpoints hold the
    model and the chains; Lightning's own multi-process strategies are not
    covered by ebmlib's tests (use :class:`~ebmlib.training.Trainer` with
    ``torchrun`` for that).

    Parameters
    ----------
    recipe : Recipe
    seed : int
        Seed of the generator of the training steps.
    log_prefix : str
        Prefix of the logged metric names.

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
        self._hooks: list[Any] = []

    def configure_optimizers(self) -> Any:
        return self.recipe.optimizers()

    def on_fit_start(self) -> None:
        self.generator = torch.Generator(self.device).manual_seed(self.seed + self.global_rank)
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress

        def count_step(*_: Any) -> None:
            progress.increment_ready()
            progress.increment_completed()

        self._hooks = [optimizer.register_step_post_hook(count_step) for optimizer in self.recipe.optimizers()]

    def on_fit_end(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = unpack_batch(batch, self.device)
        metrics: Mapping[str, Tensor] = self.recipe.training_step(x, y, generator=self.generator)
        self.log_dict({self.log_prefix + name: value for name, value in metrics.items()}, batch_size=x.shape[0])
