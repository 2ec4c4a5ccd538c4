"""Recipes: training procedures assembled only from models, samplers, buffers and losses."""

from .ebm import EBM
from .jem import JEM, jem_loss

__all__ = ["EBM", "JEM", "jem_loss"]
