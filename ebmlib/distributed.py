"""Multi-process training with ``torch.distributed``: process groups, DDP for recipes, averaged metrics.

Launch any script that builds a :class:`~ebmlib.training.Trainer` with
``torchrun --nproc_per_node N script.py ...``: the Trainer joins the process
group (:func:`init_distributed`), wraps the recipe's network in
:class:`~torch.nn.parallel.DistributedDataParallel` (:func:`distribute`), gives
every process its own random stream (so its own replay-buffer draws and chain
noise), averages the metrics over processes, and only process 0 writes
checkpoints and shows progress. Shard the data with a
:class:`~torch.utils.data.distributed.DistributedSampler`.
"""

from __future__ import annotations

import gc
import os
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .recipes import EBM

__all__ = ["ProcessInfo", "init_distributed", "process_info", "distribute", "undistribute", "all_reduce_mean"]


class ProcessInfo(NamedTuple):
    """This process's place in the process group.

    Attributes
    ----------
    rank : int
        Global index of the process, ``0 .. world_size - 1``; process 0 writes.
    local_rank : int
        Index on this machine (the GPU it uses).
    world_size : int
        Number of processes (1 when not distributed).

    Examples
    --------
    >>> ProcessInfo(rank=0, local_rank=0, world_size=1).world_size
    1
    """

    rank: int
    local_rank: int
    world_size: int


def process_info() -> ProcessInfo:
    """Rank, local rank and world size of the initialised process group, or ``(0, 0, 1)`` if none.

    Examples
    --------
    >>> process_info()
    ProcessInfo(rank=0, local_rank=0, world_size=1)
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return ProcessInfo(0, 0, 1)
    local_rank = int(os.environ.get("LOCAL_RANK", torch.distributed.get_rank()))
    return ProcessInfo(torch.distributed.get_rank(), local_rank, torch.distributed.get_world_size())


def init_distributed(device: torch.device | str = "cpu") -> ProcessInfo:
    """Join the process group described by ``torchrun``'s environment, if there is one.

    Does nothing (world size 1) unless ``WORLD_SIZE`` > 1 is set (as ``torchrun``
    does) or a group is already initialised. The backend is ``nccl`` for CUDA
    devices and ``gloo`` otherwise; with CUDA, the process uses GPU
    ``LOCAL_RANK``.

    Parameters
    ----------
    device : torch.device or str
        The training device's type picks the backend.

    Examples
    --------
    >>> init_distributed("cpu")  # not launched by torchrun
    ProcessInfo(rank=0, local_rank=0, world_size=1)
    """
    if not torch.distributed.is_available() or torch.distributed.is_initialized():
        return process_info()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return ProcessInfo(0, 0, 1)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return process_info()


def distribute(recipe: EBM, device: torch.device | str = "cpu") -> DistributedDataParallel:
    r"""Route the recipe's training forward through :class:`~torch.nn.parallel.DistributedDataParallel`.

    ``recipe.model.network`` (the network of a
    :class:`~ebmlib.models.ClassifierEnergy` or
    :class:`~ebmlib.models.NetworkEnergy`) is wrapped in DDP, which copies
    process 0's parameters to every process now and averages the parameter
    gradients of every ``backward`` over the processes, so the optimizers stay
    in step. Every forward goes through the wrapper, including the sampler's:
    those differentiate only with respect to the inputs
    (``torch.autograd.grad(E, x)``), which fires none of DDP's parameter hooks,
    so no gradient is exchanged while sampling and DDP stays ready for the
    training ``backward``.

    The wrapper is only what ``recipe.model.network`` *returns*: the module
    tree still holds the plain network, so ``state_dict`` keys, ``.to()`` and
    checkpoints are the same as without DDP. :func:`undistribute` removes it.

    Parameters
    ----------
    recipe : EBM
        Its model must have a ``network`` submodule, already on ``device``.
    device : torch.device or str

    Returns
    -------
    DistributedDataParallel

    Examples
    --------
    >>> import os, tempfile, torch
    >>> from ebmlib.buffers import ReplayBuffer, UniformInit
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> from ebmlib.samplers import Langevin
    >>> model = NetworkEnergy(MLP(2, 1, hidden=8))
    >>> recipe = EBM(model, Langevin(step_size=0.01, n_steps=2), ReplayBuffer(16, UniformInit((2,))),
    ...              torch.optim.SGD(model.parameters(), lr=0.1))
    >>> store = torch.distributed.FileStore(tempfile.mkstemp()[1], 1)
    >>> torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    >>> type(distribute(recipe)).__name__, any("module" in key for key in recipe.state_dict())
    ('DistributedDataParallel', False)
    >>> metrics = recipe.training_step(torch.randn(8, 2))
    >>> undistribute(recipe); torch.distributed.destroy_process_group()
    """
    model = recipe.model
    network = model._modules.get("network")
    if network is None:
        raise TypeError(f"distribute needs recipe.model with a 'network' submodule, got {type(model).__name__}")
    device = torch.device(device)
    wrapped = DistributedDataParallel(network, device_ids=[device] if device.type == "cuda" else None)
    model.__dict__["network"] = wrapped  # found before nn.Module's lookup of _modules; the tree is unchanged
    return wrapped


def undistribute(recipe: EBM) -> None:
    """Undo :func:`distribute`: ``recipe.model.network`` is the plain network again.

    Call it before :func:`torch.distributed.destroy_process_group`: the wrapper
    is dropped and garbage-collected here, so it doesn't outlive its process
    group (left to the interpreter's exit, that aborted about one exit in 20 in
    our tests, with "terminate called without an active exception").

    Examples
    --------
    >>> from torch import nn
    >>> from ebmlib.models import NetworkEnergy
    >>> class Holder(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.model = NetworkEnergy(nn.Linear(2, 1))
    >>> undistribute(Holder())  # never distributed: nothing to do
    """
    model: nn.Module = recipe.model
    if model.__dict__.pop("network", None) is not None:
        gc.collect()


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """The mean of ``tensor`` over all processes (``tensor`` itself when not distributed).

    Examples
    --------
    >>> all_reduce_mean(torch.tensor([1.0, 2.0]))
    tensor([1., 2.])
    """
    info = process_info()
    if info.world_size == 1:
        return tensor
    total = tensor.clone()
    torch.distributed.all_reduce(total)
    return total / info.world_size
