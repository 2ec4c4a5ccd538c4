"""Draw docs/_static/generated/quickstart.png: the quickstart's data, learned density and samples.

Runs ``quickstart.py`` exactly as the Quickstart page shows it (1 minute, 30 s of CPU time, on a busy 2-core CPU).
"""

from __future__ import annotations

import runpy
from pathlib import Path

import torch
from plotting import plt, save, show_density, show_points

if __name__ == "__main__":
    torch.set_num_threads(1)  # small networks: one thread is fastest, and fair on a shared machine
    result = runpy.run_path(str(Path(__file__).with_name("quickstart.py")))
    data = torch.cat(result["batches"])[:2000]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    show_points(axes[0], data, "data")
    show_density(axes[1], result["model"], r"learned $e^{-E(x)}$")
    show_points(axes[2], result["samples"], "samples (fresh chains)", color="tab:red")
    save(fig, "quickstart.png")
