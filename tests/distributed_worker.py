"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2``: a tiny JEM trained with DDP on CPU (gloo).

Process 0 writes ``<out>/result.json``: whether the parameters agree across processes, the loss history and
whether the replay buffers differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def main(out: Path) -> None:
    from ebmlib.buffers import ReplayBuffer, UniformInit
    from ebmlib.distributed import init_distributed, undistribute
    from ebmlib.models import MLP, ClassifierEnergy
    from ebmlib.recipes import JEM, jem_loss
    from ebmlib.samplers import Langevin
    from ebmlib.training import Trainer

    torch.set_num_threads(1)
    info = init_distributed("cpu")
    torch.manual_seed(100 + info.rank)  # different initial weights per process: DDP must copy process 0's
    model = ClassifierEnergy(MLP(2, 3, hidden=32, depth=2), n_classes=3)
    buffer = ReplayBuffer(60, UniformInit((2,), -3, 3), n_classes=3, generator=torch.Generator().manual_seed(info.rank))
    recipe = JEM(model, Langevin(step_size=0.05, n_steps=5), buffer, torch.optim.Adam(model.parameters(), lr=1e-2),
                 jem_loss(regularization_weight=0.1))
    data = torch.Generator().manual_seed(1)
    y = torch.arange(480) % 3
    x = torch.randn(480, 2, generator=data) * 0.3 + torch.stack([2 * y.float() - 2, 2 - 2 * y.float()], 1)
    dataset = TensorDataset(x, y)
    sampler = DistributedSampler(dataset, shuffle=True, seed=0, drop_last=True)
    loader = DataLoader(dataset, batch_size=16, sampler=sampler, drop_last=True)
    trainer = Trainer(recipe, device="cpu", seed=0, checkpoint_dir=out / "checkpoints", progress=False,
                      refresh_every=5)
    history = trainer.fit(loader, epochs=4)
    flat = torch.cat([p.detach().flatten() for p in recipe.model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(info.world_size)]
    torch.distributed.all_gather(gathered, flat)
    buffers = [torch.empty_like(recipe.buffer.samples) for _ in range(info.world_size)]
    torch.distributed.all_gather(buffers, recipe.buffer.samples)
    if info.rank == 0:
        result = {
            "world_size": info.world_size,
            "steps": trainer.step,
            "parameters_identical": all(torch.equal(gathered[0], g) for g in gathered[1:]),
            "buffers_differ": not torch.equal(buffers[0], buffers[1]),
            "losses": [row["loss"] for row in history],
            "accuracy": [row["p_y_given_x/accuracy"] for row in history],
        }
        (out / "result.json").write_text(json.dumps(result))
    undistribute(recipe)  # DDP must go before its process group
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
