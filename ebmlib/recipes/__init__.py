"""Recipes: training procedures assembled only from models, samplers, buffers and losses."""

from .base import Recipe
from .ebm import EBM
from .jem import JEM, jem_loss

__all__ = ["Recipe", "EBM", "JEM", "jem_loss"]
