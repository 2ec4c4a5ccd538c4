"""2D pictures: the energy grid is a normalised density, and the PNGs show the landscape, the samples and traces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from ebmlib.evaluation import (
    energy_grid,
    save_chain_traces,
    save_energy_histogram,
    save_energy_landscape,
)
from ebmlib.models import EnergyModel


class TwoWells(EnergyModel):
    """Gaussian wells of std 0.5 at (-1.5, 0) and (1.5, 0); density an equal mixture."""

    def energy(self, x, y=None):
        left = ((x - torch.tensor([-1.5, 0.0])) ** 2).sum(1) / (2 * 0.25)
        right = ((x - torch.tensor([1.5, 0.0])) ** 2).sum(1) / (2 * 0.25)
        return -torch.logsumexp(torch.stack([-left, -right]), 0)


def test_energy_grid_normalises_the_density_on_the_grid():
    axes, energy, log_density = energy_grid(TwoWells(), (-4, 4, -3, 3), resolution=161)
    assert axes.shape == (2, 161) and energy.shape == log_density.shape == (161, 161)
    cell = float((axes[0, 1] - axes[0, 0]) * (axes[1, 1] - axes[1, 0]))
    assert float(log_density.exp().sum() * cell) == pytest.approx(1.0, abs=1e-5)
    # exact density of the mixture at a well's centre: 0.5 / (2 pi 0.25) (+ a negligible other well)
    row, column = 80, int(torch.argmin((axes[0] - 1.5).abs()))
    assert float(log_density[row, column]) == pytest.approx(math.log(0.5 / (2 * math.pi * 0.25)), abs=1e-3)
    assert float(energy[row, 0]) > float(energy[row, column])  # rows are y, columns x


def test_energy_grid_refuses_bad_bounds_and_resolution():
    with pytest.raises(ValueError, match="bounds must be"):
        energy_grid(TwoWells(), (1, -1, 0, 1))
    with pytest.raises(ValueError, match="resolution must be an integer of at least 2"):
        energy_grid(TwoWells(), resolution=1)


def test_landscape_png_shows_the_wells_and_the_samples(tmp_path):
    samples = torch.tensor([1.5, 0.0]) + 0.3 * torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    path = save_energy_landscape(TwoWells(), tmp_path / "wells.png", samples=samples, title="two wells")
    image = imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 600  # 8 x 4.2 inches at 100 dpi
    without = imread(save_energy_landscape(TwoWells(), tmp_path / "bare.png", title="two wells"))
    changed = np.argwhere(abs(image[..., :3] - without[..., :3]).sum(-1) > 0.3)
    assert len(changed) > 500  # the samples are drawn ...
    columns = changed[:, 1] % (image.shape[1] // 2) / (image.shape[1] // 2)
    assert (columns > 0.5).mean() > 0.95  # ... around the right well, x = 1.5, in both panels
    assert image[..., :3].std() > 0.1  # contours, not a blank canvas
    with pytest.raises(ValueError, match=r"samples must have shape \(N, 2\)"):
        save_energy_landscape(TwoWells(), tmp_path / "bad.png", samples=torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"path must end in .png"):
        save_energy_landscape(TwoWells(), tmp_path / "wells.jpg")


def test_chain_traces_png_has_one_panel_per_coordinate(tmp_path):
    trajectory = torch.randn(200, 5, 3, generator=torch.Generator().manual_seed(0)).cumsum(0)
    image = imread(save_chain_traces(trajectory, tmp_path / "traces.png", n_chains=3, record_every=10))
    assert image.shape[0] == pytest.approx(100 * (1.9 * 3 + 0.4), abs=2)
    flat = imread(save_chain_traces(trajectory[:, :, :1], tmp_path / "one.png"))
    assert flat.shape[0] < image.shape[0] / 2
    with pytest.raises(ValueError, match=r"trajectory must have shape \(T, N, D\)"):
        save_chain_traces(torch.zeros(10, 2), tmp_path / "bad.png")


def test_energy_histogram_of_data_samples_and_noise(tmp_path):
    model, generator = TwoWells(), torch.Generator().manual_seed(0)
    data = torch.tensor([-1.5, 0.0]) + 0.5 * torch.randn(500, 2, generator=generator)
    noise = 8 * torch.rand(500, 2, generator=generator) - 4
    with torch.no_grad():
        energies = {"data": model(data), "samples": model(data.flip(0) * 1.1), "noise": model(noise)}
    image = imread(save_energy_histogram(energies, tmp_path / "energies.png"))
    assert image.shape[:2] == (360, 600)
    assert float(energies["noise"].mean()) > float(energies["data"].mean()) + 2  # what the picture shows
