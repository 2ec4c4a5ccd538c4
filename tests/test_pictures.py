"""The picture writers: PNGs of the right size and content, clear errors, pyplot left alone."""

from __future__ import annotations

import pytest
import torch
from matplotlib import image as mpimg

from ebmlib.evaluation import (
    image_grid,
    save_chain_evolution,
    save_energy_histogram,
    save_image_grid,
    save_sample_comparison,
    save_training_curves,
    training_curve_panels,
)


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_image_grid_places_every_tile_and_maps_the_value_range():
    images = torch.stack([torch.full((1, 3, 2), float(v)) for v in (-1.0, 0.0, 1.0)])  # black, grey, white
    grid = image_grid(images, nrow=2, padding=1, pad_value=0.25)
    assert grid.shape == (2 * 4 + 1, 2 * 3 + 1, 1)  # 2 rows (2 + 1 tiles), 2 columns
    assert float(grid[1:4, 1:3].max()) == 0.0  # tile 0: -1 -> 0
    assert torch.allclose(grid[1:4, 4:6], torch.tensor(0.5))  # tile 1: 0 -> 0.5
    assert torch.allclose(grid[5:8, 1:3], torch.tensor(1.0))  # tile 2 opens the second row
    assert torch.allclose(grid[5:8, 4:6], torch.tensor(0.25))  # no tile 3: padding colour
    assert float(grid[0].min()) == 0.25 and float(grid[:, 0].min()) == 0.25
    clipped = image_grid(torch.full((1, 1, 2, 2), 5.0), value_range=(0.0, 2.0), padding=0)
    assert float(clipped.max()) == 1.0
    rgb = image_grid(torch.zeros(4, 3, 5, 5), nrow=4, padding=0)
    assert rgb.shape == (5, 20, 3)


@pytest.mark.parametrize("bad", [torch.zeros(3, 28, 28), torch.zeros(0, 1, 8, 8), torch.zeros(2, 2, 8, 8)])
def test_image_grid_refuses_what_is_not_a_batch_of_images(bad):
    with pytest.raises(ValueError, match=r"images must be a non-empty batch \(N, C, H, W\)"):
        image_grid(bad)
    with pytest.raises(ValueError, match="value_range"):
        image_grid(torch.zeros(1, 1, 2, 2), value_range=(1.0, -1.0))


def test_save_image_grid_writes_a_png_of_the_grid_size(tmp_path):
    images = torch.rand(25, 1, 28, 28, generator=g()) * 2 - 1
    path = save_image_grid(images, tmp_path / "sub" / "grid.png", nrow=10, scale=2)
    written = mpimg.imread(path)
    assert written.shape[:2] == (2 * (3 * 30 + 2), 2 * (10 * 30 + 2))
    expected = image_grid(images, nrow=10)
    # PNG stores 8 bits per channel (matplotlib truncates): within one level of the grid's values.
    assert torch.allclose(torch.from_numpy(written[::2, ::2, 0]).float(), expected[..., 0], atol=1 / 255 + 1e-6)
    with pytest.raises(ValueError, match="must end in .png"):
        save_image_grid(images, tmp_path / "grid.jpg")
    with pytest.raises(ValueError, match="scale"):
        save_image_grid(images, tmp_path / "grid.png", scale=0)


def test_chain_evolution_draws_one_row_per_chain_and_checks_its_labels(tmp_path):
    trajectory = torch.rand(9, 10, 1, 28, 28, generator=g()) * 2 - 1
    path = save_chain_evolution(trajectory, tmp_path / "chains.png", steps=list(range(0, 257, 32)),
                                row_labels=[str(k) for k in range(10)], title="from uniform noise")
    picture = mpimg.imread(path)
    # 0.55 inch per row and column plus room for labels, at 100 dpi
    assert picture.shape[:2] == (round(100 * (0.55 * 10 + 0.9)), round(100 * (0.55 * 9 + 0.8)))
    assert float(picture[..., :3].std()) > 0.1  # the noise images are drawn, not a blank canvas
    with pytest.raises(ValueError, match=r"trajectory must have shape \(T, B, C, H, W\)"):
        save_chain_evolution(trajectory[0], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="steps must give one entry per snapshots .* expected 9, got 3"):
        save_chain_evolution(trajectory, tmp_path / "bad.png", steps=[0, 1, 2])
    with pytest.raises(ValueError, match="row_labels .* expected 10, got 2"):
        save_chain_evolution(trajectory, tmp_path / "bad.png", row_labels=["a", "b"])
    assert not (tmp_path / "bad.png").exists()


def test_sample_comparison_puts_panels_side_by_side(tmp_path):
    noise, buffer = torch.rand(100, 1, 28, 28, generator=g()), torch.rand(100, 1, 28, 28, generator=g(1))
    one = mpimg.imread(save_sample_comparison({"from noise": noise}, tmp_path / "one.png"))
    two = mpimg.imread(save_sample_comparison({"from noise": noise, "from the buffer": buffer}, tmp_path / "two.png"))
    assert two.shape[0] == one.shape[0] and two.shape[1] == 2 * one.shape[1]
    with pytest.raises(ValueError, match="at least one"):
        save_sample_comparison({}, tmp_path / "none.png")
    with pytest.raises(ValueError, match="one shape"):
        save_sample_comparison({"a": noise, "b": torch.zeros(4, 1, 8, 8)}, tmp_path / "mixed.png")


def test_energy_histogram_accepts_sets_of_any_size_and_refuses_non_finite_energies(tmp_path):
    sets = {"test digits": torch.randn(500, generator=g()), "uniform noise": 8 + torch.randn(50, generator=g(1)),
            "constant": torch.full((3,), 2.0)}
    path = save_energy_histogram(sets, tmp_path / "energies.png", title="energies")
    assert mpimg.imread(path).shape[:2] == (360, 600)
    save_energy_histogram({"one value": torch.zeros(4)}, tmp_path / "flat.png")  # a zero-width range still draws
    with pytest.raises(ValueError, match=r"energies\['samples'\] .* 1 are NaN or Inf"):
        save_energy_histogram({"samples": torch.tensor([0.0, float("nan")])}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"energies\['empty'\]"):
        save_energy_histogram({"empty": torch.zeros(0)}, tmp_path / "bad.png")


def test_training_curves_group_metrics_and_name_what_is_missing(tmp_path):
    history = [{"step": s, "loss": 1 / s, "loss/p_x": 0.5 / s, "p_y_given_x/accuracy": 1 - 1 / s,
                "p_x/positive_energy": -s, "p_x/negative_energy": s, "p_x/energy_gap": 2.0 * s, "lr": 1e-3}
               for s in range(1, 41)]
    history[3].pop("loss/p_x")  # drawn as a gap
    assert list(training_curve_panels(list(history[0]))) == ["loss terms", "accuracy", "energies", "energy gap"]
    path = save_training_curves(history, tmp_path / "curves.png")
    assert mpimg.imread(path).shape[:2] == (320, 1600)  # four panels of 4 x 3.2 inches at 100 dpi
    custom = save_training_curves(history, tmp_path / "lr.png", panels={"learning rate": ["lr"]})
    assert mpimg.imread(custom).shape[:2] == (320, 400)
    with pytest.raises(ValueError, match="at least one row"):
        save_training_curves([], tmp_path / "none.png")
    with pytest.raises(ValueError, match="'step'; rows \\[1\\]"):
        save_training_curves([{"step": 1, "loss": 1.0}, {"loss": 0.5}], tmp_path / "none.png")
    with pytest.raises(ValueError, match=r"no history row has: \['los'\]"):
        save_training_curves(history, tmp_path / "none.png", panels={"typo": ["los"]})
    with pytest.raises(ValueError, match="no metric to plot"):
        save_training_curves([{"step": 1, "lr": 0.1}], tmp_path / "none.png")


def test_pictures_leave_the_pyplot_backend_alone(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    save_energy_histogram({"a": torch.zeros(3)}, tmp_path / "a.png")
    assert matplotlib.get_backend() == before
