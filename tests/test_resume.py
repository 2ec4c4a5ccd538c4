"""Exact resume: N steps in one run equal N/2 steps, a checkpoint, a fresh process state and N/2 more, bit for bit."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from ebmlib.buffers import ReplayBuffer, UniformInit
from ebmlib.models import MLP, ClassifierEnergy
from ebmlib.recipes import JEM, jem_loss
from ebmlib.samplers import Langevin
from ebmlib.training import Trainer


def make_recipe(seed: int) -> JEM:
    torch.manual_seed(seed)
    model = ClassifierEnergy(MLP(2, 3, hidden=16, depth=2), n_classes=3)
    buffer = ReplayBuffer(40, UniformInit((2,), -3, 3), reinit_prob=0.2, n_classes=3,
                          generator=torch.Generator().manual_seed(seed))
    return JEM(model, Langevin(step_size=0.05, n_steps=3), buffer, torch.optim.Adam(model.parameters(), lr=1e-2),
               jem_loss(p_x_given_y_weight=1.0, regularization_weight=0.1), input_noise_std=0.01)


def make_loader() -> DataLoader:  # 5 batches per epoch: the split at step 7 falls mid-epoch
    y = torch.arange(40) % 3
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(1)) + y.float().unsqueeze(1)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(2))


def test_n_steps_equal_half_then_resume_then_half(tmp_path):
    total = 14
    whole = Trainer(make_recipe(0), device="cpu", seed=7, progress=False, refresh_every=3)
    whole.fit(make_loader(), max_steps=total)

    first = Trainer(make_recipe(0), device="cpu", seed=7, progress=False, refresh_every=3, checkpoint_dir=tmp_path)
    first.fit(make_loader(), max_steps=total // 2)
    torch.manual_seed(12345)  # a new process: the global RNG is elsewhere, the recipe is built from another seed
    second = Trainer(make_recipe(99), device="cpu", seed=0, progress=False, refresh_every=3, checkpoint_dir=tmp_path)
    assert second.resume(tmp_path).name == "checkpoint-00000007.pt"
    second.fit(make_loader(), max_steps=total)

    assert (second.step, second.epoch, second.batch_in_epoch) == (whole.step, whole.epoch, whole.batch_in_epoch)
    for (name, a), b in zip(whole.recipe.state_dict().items(), second.recipe.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # every parameter and the replay buffer, bit for bit
    assert torch.equal(whole.generator.get_state(), second.generator.get_state())
    moments = [(s["exp_avg"], s["exp_avg_sq"]) for s in whole.recipe.optimizer.state_dict()["state"].values()]
    resumed = [(s["exp_avg"], s["exp_avg_sq"]) for s in second.recipe.optimizer.state_dict()["state"].values()]
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(moments, resumed, strict=True))


def test_a_resume_at_an_epoch_boundary_keeps_the_loaders_own_shuffling(tmp_path):
    total = 10  # 5 batches per epoch: the split at step 5 is an epoch's end; the loader has its own generator
    whole = Trainer(make_recipe(0), device="cpu", seed=7, progress=False, refresh_every=3)
    whole.fit(make_loader(), max_steps=total)

    first = Trainer(make_recipe(0), device="cpu", seed=7, progress=False, refresh_every=3, checkpoint_dir=tmp_path)
    first.fit(make_loader(), epochs=1)
    second = Trainer(make_recipe(99), device="cpu", seed=0, progress=False, refresh_every=3, checkpoint_dir=tmp_path)
    assert second.resume(tmp_path).name == "checkpoint-00000005.pt" and second.batch_in_epoch == 0
    second.fit(make_loader(), max_steps=total)  # a new loader, its generator at its seed: epoch 2 must still differ
    for (name, a), b in zip(whole.recipe.state_dict().items(), second.recipe.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
