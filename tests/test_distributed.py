"""Multi-process training on two CPU processes (gloo): tests/distributed_worker.py run under torchrun.

Data parallelism through the Recipe protocol (JEM and the buffer-free ShortRunEBM), exact resume on every
process, decisions taken jointly (divergence, time budget, learning rate), data prepared once, and a process
that dies: the survivor stops with a clear error in bounded time and the last checkpoint loads.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ebmlib.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint

WORKER = Path(__file__).with_name("distributed_worker.py")
ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(mode: str, out: Path) -> list[dict]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(WORKER), mode, str(out)]
    finished = subprocess.run(command, env=ENVIRONMENT, capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stderr[-4000:]
    return [json.loads((out / f"result-{rank}.json").read_text()) for rank in range(2)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[list[dict], Path]:
    out = tmp_path_factory.mktemp("train")
    return torchrun("train", out), out


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> tuple[list[dict], Path]:
    out = tmp_path_factory.mktemp("resume")
    return torchrun("resume", out), out


def test_two_processes_keep_identical_parameters_and_the_loss_falls(trained):
    results, out = trained
    result = results[0]
    assert result["world_size"] == 2 and result["steps"] == 4 * 240 // 16  # each process sees half of 480 points
    assert result["parameters_identical"]  # gradients averaged: the optimizers stayed in step
    assert result["buffers_differ"]  # each process keeps its own chains, from its own seed
    losses = result["losses"]
    # mean loss over the first refresh window vs the last (averaged over both processes): training makes progress
    assert losses[-1] < losses[0] - 0.2, losses
    assert result["accuracy"][-1] > 0.9  # three well-separated clusters
    assert results[1]["losses"] == losses  # the metrics are averaged over processes: one history
    saved = list_checkpoints(out / "checkpoints")
    assert [p.name for p in saved][-1] == "checkpoint-00000060.pt"  # one writer: no clashing files
    state = load_checkpoint(saved[-1])
    assert state["settings"]["world_size"] == 2 and len(state["processes"]) == 2
    assert set(state["processes"][1]["local_state"]) >= {"buffer.samples"}  # process 1's own chains are saved
    assert not torch.equal(state["processes"][1]["local_state"]["buffer.samples"], state["recipe"]["buffer.samples"])
    assert not any("module" in key for key in state["recipe"])  # plain keys, as with one process
    assert torch.isfinite(state["recipe"]["buffer.samples"]).all()


def test_a_buffer_free_recipe_under_a_time_budget_stops_both_processes_together_with_the_same_lr(trained):
    first, second = trained[0]
    assert first["short_run_state_keys"] == second["short_run_state_keys"]
    assert not any(key.startswith("buffer") for key in first["short_run_state_keys"])  # no chains kept
    assert first["short_run_parameters_identical"]
    # process 1 sleeps 20 ms a step, yet both stop at the same step, by the clock they agree on
    assert first["short_run_steps"] == second["short_run_steps"] > 3
    assert first["short_run_elapsed"] == second["short_run_elapsed"] and first["short_run_elapsed"][-1] >= 2.0
    assert first["short_run_lrs"] == second["short_run_lrs"]  # the cosine schedule, from the agreed clock
    assert first["short_run_lrs"][-1] < first["short_run_lrs"][0]


def test_n_steps_equal_half_then_resume_then_half_on_every_process(resumed):
    for rank, result in enumerate(resumed[0]):
        assert result["prepared_in_order"], rank  # process 1 ran its block after process 0 finished its own
        assert result["resumed_from"] == "checkpoint-00000006.pt"
        assert result["counters"], rank
        assert result["mismatched"] == [], (rank, result["mismatched"])  # parameters and chains, bit for bit
        assert result["generator_equal"] and result["optimizer_equal"], rank
        assert result["buffers_differ"], rank  # and the chains are each process's own
        assert result["history_equal"], rank


def test_resuming_with_another_number_of_processes_is_a_clear_error(resumed):
    from ebmlib.training import Trainer
    from tests.distributed_worker import make_jem

    trainer = Trainer(make_jem(0), device="cpu", progress=False)
    with pytest.raises(CheckpointError, match=r"written by 2 processes and this run has 1.*--nproc_per_node 2"):
        trainer.resume(resumed[1] / "checkpoints")


def test_a_divergence_on_one_process_is_recovered_jointly(tmp_path):
    first, second = torchrun("divergence", tmp_path)
    assert first["steps"] == second["steps"] == 15  # nobody hung, nobody stopped
    # the NaN metrics of process 1 (step 3) are seen by both at the check of step 5; its failing step 9
    # (NaN chains) makes process 0 skip that step too, and both recover at once
    assert [e["step"] for e in first["events"]] == [5, 9]
    assert first["events"] == second["events"]
    assert first["parameters_identical"] and first["finite"] and second["finite"]
    assert first["lr"] == second["lr"] == pytest.approx(1e-2 * 0.5 * 0.5)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="lists threads through Linux's /proc")
def test_leaving_the_group_joins_its_worker_threads(tmp_path):
    for result in torchrun("shutdown", tmp_path):
        assert not [name for name in result["threads"] if "gloo" in name], result["threads"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_killed_process_leaves_the_last_checkpoint_and_the_survivor_stops_with_a_clear_error(tmp_path):
    port = free_port()
    processes = []
    for rank in range(2):  # launched by hand: torchrun would kill the survivor itself
        environment = {**ENVIRONMENT, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "EBMLIB_TEST_TIMEOUT": "20"}
        processes.append(subprocess.Popen([sys.executable, str(WORKER), "kill", str(tmp_path)], env=environment,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    started = time.monotonic()
    try:
        _, survivor_errors = processes[0].communicate(timeout=120)
    finally:
        for process in processes:
            process.kill()
    seconds = time.monotonic() - started
    assert processes[1].wait() == -9  # killed at step 7
    assert processes[0].returncode != 0 and seconds < 100  # the timeout is 20 s; startup takes a few seconds
    assert "DistributedError: training stopped at step 7" in survivor_errors, survivor_errors[-3000:]
    assert "another process died" in survivor_errors
    latest = latest_checkpoint(tmp_path / "checkpoints")
    assert latest is not None and latest.name == "checkpoint-00000006.pt"  # the end of epoch 1, before the kill
    assert f"the last checkpoint, {latest}, is intact" in survivor_errors
    state = load_checkpoint(latest)
    assert state["step"] == 6 and len(state["processes"]) == 2


def test_mnist_example_runs_under_torchrun(tmp_path):
    from tests.idx_files import write_mnist

    data = write_mnist(tmp_path / "data", n_train=120, n_test=60)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "examples" / "mnist_jem.py"), "--quick", "--data-dir", str(data), "--out", str(out),
               "--no-progress", "--steps", "4", "--eval-steps", "4"]
    finished = subprocess.run(command, env=ENVIRONMENT, capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())  # written once, by process 0
    assert metrics["steps"] == 4 and metrics["settings"]["quick"] is True
    saved = list_checkpoints(out / "checkpoints")
    assert [p.name for p in saved][-1] == "checkpoint-00000004.pt"
    assert load_checkpoint(saved[-1])["settings"]["world_size"] == 2
