"""RecipeModule: any recipe under PyTorch Lightning, on one process and on two (DDP on CPU, gloo).

The same steps as ebmlib's Trainer, exact resume through ``ckpt_path`` (weights, chains, generators), parameters
kept equal and chains kept apart by two DDP processes (this file, run as a script, is their worker: Lightning's
``strategy="ddp"`` starts process 1 by running it again), and a clear error for the strategies it does not support.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ebmlib.checkpoint import CheckpointError
from ebmlib.training import Trainer

lightning = pytest.importorskip("lightning", reason="needs lightning: pip install -e '.[test]'")
from ebmlib.training.lightning import RecipeModule  # noqa: E402
from tests.test_loggers import data, make_ebm  # noqa: E402  (the toy EBM and data of the logger tests)

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}


def shuffled(n: int = 48) -> DataLoader:
    """``n / 8`` batches per epoch (per process under DDP), shuffled by the global torch RNG."""
    return DataLoader(TensorDataset(data(n)), batch_size=8, shuffle=True)


def differences(a: torch.nn.Module, b: torch.nn.Module) -> list[str]:
    """The names of the state_dict entries that are not equal bit for bit."""
    return [name for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True)
            if not torch.equal(x, y)]


# ---------------------------------------------------------------------------------------- one process
def test_a_recipe_under_lightning_takes_exactly_the_steps_it_takes_under_the_trainer():
    batches = [data()[i:i + 8] for i in range(0, 48, 8)]  # a fixed order for both
    ours = make_ebm()
    Trainer(ours, device="cpu", seed=3, progress=False).fit(batches, max_steps=12)

    theirs = make_ebm()
    trainer = lightning.Trainer(max_steps=12, accelerator="cpu", enable_checkpointing=False, log_every_n_steps=1,
                                **QUIET)
    trainer.fit(RecipeModule(theirs, seed=3), DataLoader(TensorDataset(data()), batch_size=8, shuffle=False))
    assert trainer.global_step == 12  # every optimizer step of the recipe counts as one of Lightning's
    assert differences(ours, theirs) == []  # same seed, same data: the same run, bit for bit
    assert {"train/loss", "train/energy_gap"} <= set(trainer.callback_metrics)


def test_a_short_lightning_fit_learns_the_toy_data():
    recipe = make_ebm()
    noise = torch.rand(500, 2, generator=torch.Generator().manual_seed(5)) * 6 - 3
    target = data(500)

    def gap() -> float:  # mean energy of uniform noise on the buffer's box minus that of the data
        with torch.no_grad():
            return float(recipe.model(noise).mean() - recipe.model(target).mean())

    before = gap()
    trainer = lightning.Trainer(max_epochs=10, accelerator="cpu", enable_checkpointing=False, **QUIET)
    loader = DataLoader(TensorDataset(data()), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(2))
    trainer.fit(RecipeModule(recipe), loader)
    # Measured with these seeds: the gap goes from -0.01 to 166 (no L2 term). Required: more than 1.
    assert trainer.global_step == 60 and gap() > max(before, 0.0) + 1.0, (before, gap())


@pytest.mark.filterwarnings("ignore:Using ModelCheckpoint with manual optimization")  # the state after the step
@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")  # ModelCheckpoint is not needed to resume
def test_resuming_through_ckpt_path_continues_bit_for_bit(tmp_path):
    total = 18  # 6 batches an epoch; the checkpoint of step 6 ends the first epoch
    torch.manual_seed(5)
    checkpoints = lightning.pytorch.callbacks.ModelCheckpoint(tmp_path, "{step}", every_n_train_steps=6, save_top_k=-1)
    whole = RecipeModule(make_ebm(), seed=3)
    lightning.Trainer(max_steps=total, accelerator="cpu", callbacks=[checkpoints], **QUIET).fit(whole, shuffled())

    torch.manual_seed(12345)  # as in a new process: the global RNG elsewhere, the recipe from another seed
    resumed = RecipeModule(make_ebm(seed=99), seed=0)
    trainer = lightning.Trainer(max_steps=total, accelerator="cpu", enable_checkpointing=False, **QUIET)
    trainer.fit(resumed, shuffled(), ckpt_path=tmp_path / "step=6.ckpt")
    assert trainer.global_step == total
    assert differences(whole.recipe, resumed.recipe) == []  # weights and chains
    assert torch.equal(whole.generator.get_state(), resumed.generator.get_state())
    for ours, theirs in zip(whole.recipe.optimizer.state_dict()["state"].values(),
                            resumed.recipe.optimizer.state_dict()["state"].values(), strict=True):
        assert torch.equal(ours["exp_avg_sq"], theirs["exp_avg_sq"])


def test_a_checkpoint_of_two_processes_does_not_resume_on_one(tmp_path):
    whole = RecipeModule(make_ebm())
    trainer = lightning.Trainer(max_steps=2, accelerator="cpu", enable_checkpointing=False, **QUIET)
    trainer.fit(whole, shuffled())
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert state["ebmlib"]["world_size"] == 1 and len(state["ebmlib"]["processes"]) == 1
    state["ebmlib"]["world_size"] = 2
    state["ebmlib"]["processes"] *= 2
    torch.save(state, tmp_path / "two.ckpt")
    trainer = lightning.Trainer(max_steps=4, accelerator="cpu", enable_checkpointing=False, **QUIET)
    with pytest.raises(CheckpointError, match=r"written by 2 processes and this run has 1.*devices=2"):
        trainer.fit(RecipeModule(make_ebm()), shuffled(), ckpt_path=tmp_path / "two.ckpt")


def test_a_checkpoint_without_each_process_state_resumes_with_a_warning(tmp_path):
    trainer = lightning.Trainer(max_steps=2, accelerator="cpu", enable_checkpointing=False, **QUIET)
    trainer.fit(RecipeModule(make_ebm()), shuffled())
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    del state["ebmlib"]  # as an older RecipeModule wrote them
    torch.save(state, tmp_path / "old.ckpt")
    resumed = RecipeModule(make_ebm(seed=99))
    trainer = lightning.Trainer(max_steps=2, accelerator="cpu", enable_checkpointing=False, **QUIET)
    with pytest.warns(UserWarning, match="does not continue exactly"):
        trainer.fit(resumed, shuffled(), ckpt_path=tmp_path / "old.ckpt")
    assert torch.equal(resumed.recipe.buffer.samples, state["state_dict"]["recipe.buffer.samples"])


@pytest.mark.parametrize("strategy", ["model_parallel", "deepspeed"])
def test_an_unsupported_strategy_is_refused_with_the_supported_ones_named(strategy):
    if strategy == "deepspeed":  # FSDP needs a GPU, DeepSpeed its package; ModelParallelStrategy runs on a CPU
        pytest.importorskip("deepspeed", reason="Lightning's DeepSpeed strategy needs the deepspeed package")
    else:
        strategy = lightning.pytorch.strategies.ModelParallelStrategy()
    trainer = lightning.Trainer(max_steps=2, accelerator="cpu", devices=1, strategy=strategy,
                                enable_checkpointing=False, **QUIET)
    try:
        with pytest.raises(ValueError, match=r"SingleDeviceStrategy.*'ddp', 'ddp_spawn'"):
            trainer.fit(RecipeModule(make_ebm()), shuffled())
    finally:  # the strategy joined a process group of one before the module could refuse it
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


# ---------------------------------------------------------------------------------------- two processes
DDP_STEPS = 50  # 80 points: 5 batches of 8 per process and epoch; the checkpoint of step 25 ends epoch 5


def ddp_worker(out: Path) -> None:
    """One DDP run of ``DDP_STEPS`` steps checkpointed halfway, then a new module resumed from the checkpoint."""
    torch.set_num_threads(1)
    torch.manual_seed(5)
    checkpoints = lightning.pytorch.callbacks.ModelCheckpoint(out / "checkpoints", "{step}", save_top_k=-1,
                                                              every_n_train_steps=DDP_STEPS // 2)
    whole = RecipeModule(make_ebm(), seed=3)
    trainer = lightning.Trainer(max_steps=DDP_STEPS, accelerator="cpu", devices=2, strategy="ddp",
                                callbacks=[checkpoints], **QUIET)
    trainer.fit(whole, shuffled(80))
    rank = trainer.global_rank
    everyone: list[dict] = [{}, {}]
    torch.distributed.all_gather_object(everyone, {"parameters": [p.detach() for p in whole.recipe.model.parameters()],
                                                   "chains": whole.recipe.buffer.samples})

    torch.manual_seed(12345 + rank)  # as in a new process: the global RNG elsewhere, the recipe from another seed
    resumed = RecipeModule(make_ebm(seed=99 + rank), seed=0)
    trainer = lightning.Trainer(max_steps=DDP_STEPS, accelerator="cpu", devices=2, strategy="ddp",
                                enable_checkpointing=False, **QUIET)
    trainer.fit(resumed, shuffled(80), ckpt_path=out / "checkpoints" / f"step={DDP_STEPS // 2}.ckpt")
    result = {
        "world_size": trainer.world_size,
        "steps": trainer.global_step,
        "parameters_identical": all(torch.equal(a, b) for a, b in zip(*(e["parameters"] for e in everyone),
                                                                      strict=True)),
        "chains_differ": not torch.equal(everyone[0]["chains"], everyone[1]["chains"]),
        "resume_differences": differences(whole.recipe, resumed.recipe),
        "generator_equal": torch.equal(whole.generator.get_state(), resumed.generator.get_state()),
    }
    (out / f"result-{rank}.json").write_text(json.dumps(result))
    torch.distributed.barrier()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")}
    environment.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    finished = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(out)], env=environment,
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert finished.returncode == 0, finished.stderr[-4000:]
    return [json.loads((out / f"result-{rank}.json").read_text()) for rank in range(2)]


def test_two_ddp_processes_keep_identical_parameters_and_their_own_chains(ddp_results):
    for result in ddp_results:
        assert result["world_size"] == 2 and result["steps"] == DDP_STEPS
        assert result["parameters_identical"]  # gradients averaged over the processes at every step
        assert result["chains_differ"]  # each process keeps its own chains, from its own generator


def test_every_ddp_process_resumes_its_own_chains_and_generator_bit_for_bit(ddp_results):
    for result in ddp_results:
        assert result["resume_differences"] == []  # weights and this process's chains
        assert result["generator_equal"]


if __name__ == "__main__":
    ddp_worker(Path(sys.argv[1]))
