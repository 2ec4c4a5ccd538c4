"""Persistent replay buffers and the initialisers of fresh chains."""

from .initializers import ClassGaussianInit, GaussianInit, Initializer, UniformInit
from .replay import ReplayBuffer

__all__ = ["ReplayBuffer", "Initializer", "UniformInit", "GaussianInit", "ClassGaussianInit"]
