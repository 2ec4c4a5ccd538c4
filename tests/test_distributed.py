"""Multi-process training: two CPU processes under torchrun (gloo) train one JEM with DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from ebmlib.checkpoint import list_checkpoints, load_checkpoint

WORKER = Path(__file__).with_name("distributed_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def test_two_processes_keep_identical_parameters_and_the_loss_falls(tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(WORKER), str(tmp_path)]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2 and result["steps"] == 4 * 240 // 16  # each process sees half of 480 points
    assert result["parameters_identical"]  # DDP averaged the gradients: the optimizers stayed in step
    assert result["buffers_differ"]  # each process keeps its own chains, from its own seed
    losses = result["losses"]
    # mean loss over the first refresh window vs the last (averaged over both processes): training makes progress
    assert losses[-1] < losses[0] - 0.2, losses
    assert result["accuracy"][-1] > 0.9  # three well-separated clusters
    saved = list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in saved][-1] == "checkpoint-00000060.pt"  # one writer: no clashing files
    state = load_checkpoint(saved[-1])
    assert state["settings"]["world_size"] == 2
    assert not any(key.startswith("model.network.module") for key in state["recipe"])  # plain keys, as without DDP
    assert torch.isfinite(state["recipe"]["buffer.samples"]).all()


def test_mnist_example_runs_under_torchrun(tmp_path):
    from tests.idx_files import write_mnist

    data = write_mnist(tmp_path / "data", n_train=120, n_test=60)
    out = tmp_path / "run"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "examples" / "mnist_jem.py"), "--quick", "--data-dir", str(data), "--out", str(out),
               "--no-progress", "--steps", "4", "--generation-steps", "4"]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())  # written once, by process 0
    assert metrics["steps"] == 4 and metrics["settings"]["quick"] is True
    saved = list_checkpoints(out / "checkpoints")
    assert [p.name for p in saved][-1] == "checkpoint-00000004.pt"
    assert load_checkpoint(saved[-1])["settings"]["world_size"] == 2
