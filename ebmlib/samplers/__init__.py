"""Samplers: Langevin/SGLD, MALA, HMC, NUTS, annealed and underdamped Langevin and parallel tempering behind one
interface, with opt-in fast paths (one declaration, :class:`~ebmlib.samplers.base.FastPaths`); for binary and
one-hot categorical data, Gibbs, Gibbs-with-gradients and DMALA."""

from .acceleration import PRECISIONS
from .adaptation import (
    AdaptableSampler,
    DualAveraging,
    DualAveragingState,
    WarmupResult,
    WarmupState,
    WelfordState,
    WindowedAdaptation,
    adaptation_windows,
)
from .annealed_langevin import AnnealedLangevin, AnnealedState
from .base import ChainState, Sampler, StepInfo, energy_and_grad
from .discrete import DiscreteSampler
from .dmala import DMALA
from .gibbs import Gibbs
from .gibbs_with_gradients import GibbsWithGradients
from .gradient_descent import DescentState, GradientDescent
from .hmc import HMC
from .langevin import Langevin
from .mala import MALA
from .metropolis import metropolis_accept, metropolis_test
from .nuts import NUTS, NUTSInfo
from .parallel_tempering import ParallelTempering, TemperedEnergy, TemperedState, geometric_temperatures
from .underdamped_langevin import KineticState, UnderdampedLangevin

__all__ = ["Sampler", "ChainState", "StepInfo", "energy_and_grad", "metropolis_accept", "metropolis_test",
           "Langevin", "MALA", "HMC", "PRECISIONS",
           "AnnealedLangevin", "AnnealedState", "UnderdampedLangevin", "KineticState",
           "ParallelTempering", "TemperedState", "TemperedEnergy", "geometric_temperatures", "NUTS", "NUTSInfo",
           "Gibbs", "GibbsWithGradients", "DMALA", "DiscreteSampler",
           "WindowedAdaptation", "WarmupState", "WarmupResult", "DualAveraging", "DualAveragingState", "WelfordState",
           "adaptation_windows", "AdaptableSampler",
           "GradientDescent", "DescentState"]
