"""Training any :class:`~ebmlib.recipes.Recipe`: the loop, callbacks, the divergence guard, learning-rate
schedules, loggers, exact resume and multi-process training.

========================  ===============================================================
``loop``                  :class:`Trainer`: the loop, checkpoints
``budget``                :class:`Budget`, :class:`Stopwatch`, :class:`MetricWindow`
``callbacks``             :class:`Callback` (named hooks with checkpointed state), :class:`Evaluation`
``divergence``            :class:`DivergenceGuard`
``ema``                   :class:`ExponentialMovingAverage` of the weights
``schedules``             learning-rate schedules, the one writer of the learning rate
``warmup``                :class:`TermWarmUp`: loss terms switched on by a ramp of the step
``progress``              :class:`ProgressBar`
``loggers``               :class:`CSVLogger`, :class:`TensorBoardLogger`
``lightning``             :class:`~ebmlib.training.lightning.RecipeModule`: any recipe under PyTorch Lightning
``resume``                RNG states, loader replay: what makes a resume exact
``distributed``           the multi-process lifecycle (``torchrun``)
========================  ===============================================================
"""

from . import budget, callbacks, distributed, divergence, ema, loggers, loop, progress, resume, schedules, warmup
from .budget import Budget, MetricWindow, Stopwatch
from .callbacks import Callback, Evaluation, StepFunction
from .distributed import DistributedError
from .divergence import DivergenceError, DivergenceGuard
from .ema import ExponentialMovingAverage
from .loggers import CSVLogger, TensorBoardLogger
from .loop import Trainer, resolve_device, resolve_precision, unpack_batch
from .progress import ProgressBar
from .schedules import Constant, CosineDecay, LearningRateSchedule, LinearWarmUp
from .warmup import TermWarmUp

__all__ = [
    "Trainer", "resolve_device", "resolve_precision", "unpack_batch", "Budget", "Stopwatch", "MetricWindow",
    "Callback", "StepFunction", "Evaluation", "ProgressBar", "CSVLogger", "TensorBoardLogger",
    "DivergenceGuard", "DivergenceError", "DistributedError", "ExponentialMovingAverage",
    "LearningRateSchedule", "Constant", "CosineDecay", "LinearWarmUp", "TermWarmUp",
    "budget", "callbacks", "distributed", "divergence", "ema", "loggers", "loop", "progress", "resume", "schedules",
    "warmup",
]
