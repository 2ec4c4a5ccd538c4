"""Samplers: Langevin/SGLD, MALA, HMC, NUTS, annealed and underdamped Langevin and parallel tempering behind one
interface, with opt-in fast paths (one declaration, :class:`~ebmlib.samplers.base.FastPaths`)."""

from .acceleration import PRECISIONS
from .annealed_langevin import AnnealedLangevin, AnnealedState
from .base import ChainState, Sampler, StepInfo, energy_and_grad
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
           "ParallelTempering", "TemperedState", "TemperedEnergy", "geometric_temperatures", "NUTS", "NUTSInfo"]
