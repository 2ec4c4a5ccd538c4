"""Run by tests/test_distributed.py on 2 CPU processes (gloo): ``python distributed_worker.py MODE OUT``.

Each process writes ``<OUT>/result-<rank>.json``. Modes:

- ``train``: a tiny JEM trained on sharded data (do the parameters agree, do the chains differ, does the loss
  fall), then a buffer-free ShortRunEBM under a time budget with a cosine schedule (do the processes stop at the
  same step with the same learning rates);
- ``resume``: N steps in one run against N/2, a checkpoint, a new trainer and N/2 more, compared on every process;
  and a ``main_process_first`` block;
- ``divergence``: NaN metrics on process 1 only, then a step that fails on process 1 only: recovered jointly;
- ``kill``: process 1 kills itself mid-run (launched without torchrun: the survivor must stop by itself);
- ``shutdown``: an optimizer and an ``all_gather`` inside :func:`distributed`, then the threads left after it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.losses import ContrastiveDivergence, EnergyRegularization, WeightedSum
from ebmlib.models import MLP, ClassifierEnergy, NetworkEnergy
from ebmlib.recipes import JEM, ShortRunEBM, jem_loss
from ebmlib.samplers import Langevin
from ebmlib.training import Callback, CosineDecay, DivergenceGuard, Trainer
from ebmlib.training.distributed import distributed, main_process_first, sharded_loader


def clusters(n: int = 480) -> TensorDataset:
    y = torch.arange(n) % 3
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(1)) * 0.3
    return TensorDataset(x + torch.stack([2 * y.float() - 2, 2 - 2 * y.float()], 1), y)


def make_jem(rank: int, seed: int = 100) -> JEM:
    torch.manual_seed(seed + rank)  # different initial weights per process: process 0's must be copied
    model = ClassifierEnergy(MLP(2, 3, hidden=32, depth=2), n_classes=3)
    buffer = ReplayBuffer(60, UniformInit((2,), -3, 3), n_classes=3, generator=torch.Generator().manual_seed(rank))
    return JEM(model, Langevin(step_size=0.05, n_steps=5), buffer, torch.optim.Adam(model.parameters(), lr=1e-2),
               jem_loss(p_x_given_y_weight=1.0, regularization_weight=0.1), input_noise_std=0.01)


def gathered(tensor: torch.Tensor) -> list[torch.Tensor]:
    parts = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, tensor)
    return parts


def flat_parameters(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def train(out: Path, rank: int) -> dict:
    recipe = make_jem(rank)
    trainer = Trainer(recipe, device="cpu", seed=0, checkpoint_dir=out / "checkpoints", progress=False,
                      refresh_every=5)
    history = trainer.fit(sharded_loader(clusters(), batch_size=16, seed=0), epochs=4)
    parameters, buffers = gathered(flat_parameters(recipe.model)), gathered(recipe.buffer.samples)
    torch.manual_seed(0)
    model = NetworkEnergy(MLP(2, 1, hidden=16))
    short_run = ShortRunEBM(model, Langevin(step_size=0.05, noise_std=0.05, n_steps=5), UniformInit((2,), -3, 3),
                            torch.optim.Adam(model.parameters(), lr=1e-2),
                            WeightedSum({"cd": (1.0, ContrastiveDivergence()), "l2": (0.1, EnergyRegularization())}))
    slower = [SlowDown()] if rank == 1 else []  # process 1 is slower: the time budget must still end both together
    timed = Trainer(short_run, device="cpu", seed=1, progress=False, refresh_every=3, lr_schedule=CosineDecay(),
                    callbacks=slower)
    timed_history = timed.fit(sharded_loader(TensorDataset(clusters().tensors[0]), batch_size=16), max_seconds=2.0,
                              epochs=1000)
    short_run_parameters = gathered(flat_parameters(model))
    return {
        "steps": trainer.step,
        "parameters_identical": all(torch.equal(parameters[0], p) for p in parameters[1:]),
        "buffers_differ": not torch.equal(buffers[0], buffers[1]),
        "losses": [row["loss"] for row in history],
        "accuracy": [row["p_y_given_x/accuracy"] for row in history],
        "short_run_steps": timed.step,
        "short_run_lrs": [row["lr"] for row in timed_history],
        "short_run_elapsed": [row["elapsed_seconds"] for row in timed_history],
        "short_run_parameters_identical": torch.equal(*short_run_parameters),
        "short_run_state_keys": sorted(short_run.state_dict()),
    }


class SlowDown(Callback):
    def on_step_end(self, trainer, metrics):
        time.sleep(0.02)


def resume(out: Path, rank: int) -> dict:
    with main_process_first() as process:
        marker = out / "prepared.txt"
        if process.rank == 0:
            time.sleep(0.5)  # a slow download
            marker.write_text("done")
        prepared_in_order = marker.exists()

    def loader():
        return sharded_loader(clusters(240), batch_size=16, seed=3)  # 7 batches per process and epoch

    total = 12  # the split at step 6 falls mid-epoch
    whole = Trainer(make_jem(rank), device="cpu", seed=7, progress=False, refresh_every=3)
    whole.fit(loader(), max_steps=total)
    first = Trainer(make_jem(rank), device="cpu", seed=7, progress=False, refresh_every=3,
                    checkpoint_dir=out / "checkpoints")
    first.fit(loader(), max_steps=total // 2)
    torch.manual_seed(12345 + rank)  # a new process: the global RNG elsewhere, the recipe from another seed
    second = Trainer(make_jem(rank, seed=999), device="cpu", seed=0, progress=False, refresh_every=3,
                     checkpoint_dir=out / "checkpoints")
    resumed_from = second.resume(out / "checkpoints").name
    second.fit(loader(), max_steps=total)
    mismatched = [name for (name, a), b in zip(whole.recipe.state_dict().items(), second.recipe.state_dict().values(),
                                                strict=True) if not torch.equal(a, b)]
    moments = [s["exp_avg_sq"] for s in whole.recipe.optimizer.state_dict()["state"].values()]
    resumed = [s["exp_avg_sq"] for s in second.recipe.optimizer.state_dict()["state"].values()]
    return {
        "prepared_in_order": prepared_in_order,
        "resumed_from": resumed_from,
        "counters": [second.step, second.epoch, second.batch_in_epoch] == [whole.step, whole.epoch,
                                                                           whole.batch_in_epoch],
        "mismatched": mismatched,
        "generator_equal": torch.equal(whole.generator.get_state(), second.generator.get_state()),
        "optimizer_equal": all(torch.equal(a, b) for a, b in zip(moments, resumed, strict=True)),
        "buffers_differ": not torch.equal(*gathered(second.recipe.buffer.samples)),
        "history_equal": [r["loss"] for r in whole.history[2:]] == [r["loss"] for r in second.history[2:]],
    }


def divergence(out: Path, rank: int) -> dict:
    recipe = make_jem(rank)

    def poison(trainer, metrics):  # process 1 only: NaN metrics at step 3; NaN chains and metrics at step 8
        if rank == 1 and trainer.step in (3, 8):
            metrics["loss"] = torch.tensor(float("nan"))
        if rank == 1 and trainer.step == 8:
            recipe.buffer.samples.fill_(float("nan"))  # step 9 fails in the sampler's input check, on process 1

    guard = DivergenceGuard(max_recoveries=3)
    trainer = Trainer(recipe, device="cpu", seed=0, progress=False, refresh_every=5, callbacks=[poison],
                      divergence_guard=guard)
    trainer.fit(sharded_loader(clusters(), batch_size=16), max_steps=15)
    parameters = gathered(flat_parameters(recipe.model))
    return {
        "steps": trainer.step,
        "events": guard.events,
        "parameters_identical": torch.equal(parameters[0], parameters[1]),
        "finite": bool(torch.isfinite(parameters[0]).all()) and bool(torch.isfinite(recipe.buffer.samples).all()),
        "lr": recipe.optimizer.param_groups[0]["lr"],
    }


def kill(out: Path, rank: int) -> dict:
    def die_at_step_7(trainer, metrics):
        if rank == 1 and trainer.step == 7:
            os.kill(os.getpid(), signal.SIGKILL)

    trainer = Trainer(make_jem(rank), device="cpu", seed=0, progress=False, refresh_every=2,
                      checkpoint_dir=out / "checkpoints", callbacks=[die_at_step_7])
    trainer.fit(sharded_loader(clusters(192), batch_size=16), epochs=100)  # 6 batches per process and epoch
    return {"steps": trainer.step}


def threads_after_shutdown(out: Path) -> None:
    """The process's threads after leaving the group: gloo's workers must be gone, or one still releasing a
    collective's tensors while the interpreter exits aborts the process."""
    with distributed("cpu") as process:
        torch.optim.Adam(torch.nn.Linear(2, 2).parameters())  # imports torch._dynamo, as training does
        gathered(torch.ones(3))  # tensors created in Python, held by the collective
    names = [(path / "comm").read_text().strip() for path in Path("/proc/self/task").iterdir()]
    (out / f"result-{process.rank}.json").write_text(json.dumps({"threads": names}))


def main(mode: str, out: Path) -> None:
    torch.set_num_threads(1)
    if mode == "shutdown":
        threads_after_shutdown(out)
        return
    with distributed("cpu", timeout=float(os.environ.get("EBMLIB_TEST_TIMEOUT", "60"))) as process:
        result = {"train": train, "resume": resume, "divergence": divergence, "kill": kill}[mode](out, process.rank)
        (out / f"result-{process.rank}.json").write_text(json.dumps({"world_size": process.world_size, **result}))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
