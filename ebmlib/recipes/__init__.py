"""Recipes: training procedures assembled only from models, samplers, buffers and losses."""

from .base import Recipe
from .contrastive import ContrastiveRecipe
from .ebm import EBM
from .jem import JEM, jem_loss
from .short_run import ShortRunEBM

__all__ = ["Recipe", "ContrastiveRecipe", "EBM", "ShortRunEBM", "JEM", "jem_loss"]
