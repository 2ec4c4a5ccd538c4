"""Checkpoint files: round trip, atomic writes, clear errors, safe loading, rotation, RNG states."""

from __future__ import annotations

import os
import pickle
import random

import pytest
import torch

from ebmlib.checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from ebmlib.training.resume import capture_rng_states, restore_rng_states


def test_round_trip_keeps_tensors_numbers_and_containers(tmp_path):
    state = {
        "model": {"weight": torch.randn(3, 4), "steps": torch.tensor(7)},
        "step": 12,
        "lr": 0.5,
        "name": "run",
        "history": [{"loss": 1.5}, {"loss": 0.5}],
        "betas": (0.9, 0.999),
        "flag": None,
    }
    path = save_checkpoint(tmp_path / "sub" / "c.pt", state)
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["model"]["steps"].item() == 7
    assert {k: v for k, v in loaded.items() if k != "model"} == {k: v for k, v in state.items() if k != "model"}
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]  # no temporary file left behind


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", {"step": 1})

    def crash_mid_write(obj, file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.pt does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")


@pytest.mark.parametrize("damage", ["truncate", "empty", *(f"garbage{seed}" for seed in range(30)),
                                    *(f"flipped{seed}" for seed in range(30))])
def test_damaged_file_error_names_the_file(tmp_path, damage):
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.randn(100, 100)})
    data = path.read_bytes()
    if damage.startswith("garbage"):  # random bytes (seeded: some fail deep inside the unpickler)
        damaged = random.Random(int(damage[7:])).randbytes(2000)
    elif damage.startswith("flipped"):  # a valid file with 20 bytes overwritten at random places
        rng, damaged = random.Random(int(damage[7:])), bytearray(data)
        for position in rng.sample(range(len(data)), 20):
            damaged[position] = rng.randrange(256)
        damaged = bytes(damaged)
    else:
        damaged = {"truncate": data[: len(data) // 2], "empty": b""}[damage]
    path.write_bytes(damaged)
    with pytest.raises(CheckpointError, match=f"checkpoint file {path} is truncated, corrupted"):
        load_checkpoint(path)


class _RunsCode:
    """Unpickling this would call os.system: weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ("echo hacked > hacked.txt",))


def test_file_that_would_run_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as file:
        torch.save({"payload": _RunsCode()}, file, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not (tmp_path / "hacked.txt").exists()


def test_non_dict_content_is_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2], path)
    with pytest.raises(CheckpointError, match="must hold a dict, got list"):
        load_checkpoint(path)


def test_listing_sorts_by_step_and_pruning_keeps_the_last_three(tmp_path):
    for step in (5, 100, 20, 7):
        save_checkpoint(checkpoint_path(tmp_path, step), {"step": step})
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "checkpoint-00000005.pt", "checkpoint-00000007.pt", "checkpoint-00000020.pt", "checkpoint-00000100.pt"]
    deleted = prune_checkpoints(tmp_path, keep=3)
    assert [p.name for p in deleted] == ["checkpoint-00000005.pt"]
    assert [load_checkpoint(p)["step"] for p in list_checkpoints(tmp_path)] == [7, 20, 100]
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 100)
    assert (tmp_path / "notes.txt").exists()
    with pytest.raises(ValueError, match="keep must be a positive"):
        prune_checkpoints(tmp_path, keep=0)


def test_rng_states_survive_a_checkpoint_round_trip(tmp_path):
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(4)
    torch.rand(5), torch.rand(5, generator=generator)  # move both away from their seeds
    path = save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_states(generator)})
    expected = torch.rand(3), torch.rand(3, generator=generator)
    other = torch.Generator().manual_seed(99)
    torch.manual_seed(99)
    restore_rng_states(load_checkpoint(path)["rng"], other)
    assert torch.equal(torch.rand(3), expected[0])
    assert torch.equal(torch.rand(3, generator=other), expected[1])
