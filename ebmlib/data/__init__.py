"""Data: 2D toy distributions."""

from .toy import TOY_DISTRIBUTIONS, checkerboard, eight_gaussians, rings, sample_toy, two_moons

__all__ = ["TOY_DISTRIBUTIONS", "sample_toy", "eight_gaussians", "two_moons", "rings", "checkerboard"]
