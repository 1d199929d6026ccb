"""Data-parallel training in several processes, launched by ``torchrun``.

One command trains with one process per CPU core group, GPU or machine::

    torchrun --standalone --nproc_per_node=2 -m aigc_lab train vae --data digits

``torchrun`` starts the processes and tells each one who it is through environment variables
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`setup` joins
them into one process group (``gloo`` on the CPU, ``NCCL`` on CUDA GPUs), and
:func:`aigc_lab.train.fit` then does what PyTorch's ``DistributedDataParallel`` (DDP) does
(Li et al., 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training"):

1. every process starts from the same weights (:func:`broadcast_parameters`, from rank 0);
2. the global batch of ``B`` images is split into ``world_size`` shards of ``B / world_size``,
   one per process, each process loading only its own shard;
3. after each backward pass the gradients are averaged over the processes with one
   ``all_reduce`` (:func:`average_gradients`), so every process takes the same optimizer step:
   the mean of per-shard mean losses is the mean loss of the global batch, and the weights stay
   identical everywhere without being sent again;
4. only rank 0 writes TensorBoard logs and checkpoints; every process resumes from them.

Why not wrap the model in ``DistributedDataParallel`` itself? DDP averages gradients from hooks
that its ``forward`` arms for exactly one backward pass. The book's training steps call backward
more than once per step (a GAN's critic, then its generator, each with its own optimizer) inside
:meth:`~aigc_lab.contract.TrainableModel.training_step`, which DDP's wrapper does not support. The
collective it uses underneath, ``torch.distributed.all_reduce``, works for any number of backward
passes, so the loop calls it directly, once per optimizer step, on one flat buffer (DDP also
packs gradients into buckets: one call instead of one per tensor).

A single process (no ``torchrun``, or ``--nproc_per_node=1``) takes none of these paths:
:data:`SINGLE` describes it, and training is bit for bit what it was without this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Group:
    """Who this process is among the processes training together."""

    rank: int = 0  # 0 .. world_size - 1; rank 0 writes the logs and checkpoints
    world_size: int = 1  # how many processes train together
    local_rank: int = 0  # the rank on this machine: which GPU this process uses

    @property
    def is_main(self) -> bool:
        """True for the one process that writes logs, checkpoints and prints (rank 0)."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Group()


def _int_env(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer (torchrun sets it), got {text!r}") from None


def from_environment() -> Group:
    """The :class:`Group` that ``torchrun``'s variables describe (:data:`SINGLE` without them)."""
    world_size = _int_env("WORLD_SIZE", 1)
    rank = _int_env("RANK", 0)
    local_rank = _int_env("LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world_size} do not describe a process group (need 0 <= RANK < WORLD_SIZE)")
    return Group(rank=rank, world_size=world_size, local_rank=local_rank)


def setup(device: torch.device) -> tuple[Group, torch.device]:
    """Join the process group ``torchrun`` started, once; return it and this process's device.

    On CUDA each process takes the GPU of its local rank (``cuda:LOCAL_RANK``) and the group talks
    over NCCL; elsewhere over ``gloo`` (CPU tensors, TCP). A single process returns
    ``(SINGLE, device)`` and starts nothing.
    """
    if dist.is_available() and dist.is_initialized():
        group = Group(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=from_environment().local_rank)
    else:
        group = from_environment()
        if not group.is_distributed:
            return SINGLE, device
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 asks for distributed training, but this PyTorch build has no torch.distributed")
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "mps":
            raise ValueError("distributed training runs on CUDA GPUs or on the CPU, not on MPS; pass --device cpu")
        dist.init_process_group(backend=backend)
    if device.type == "cuda":
        device = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(device)
    return group, device


def shutdown() -> None:
    """Leave the process group (at the end of a ``torchrun`` command); nothing for a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(indices: torch.Tensor, group: Group) -> torch.Tensor:
    """This process's part of a global batch: the ``rank``-th of ``world_size`` equal, contiguous slices."""
    if not group.is_distributed:
        return indices
    if len(indices) % group.world_size:
        raise ValueError(f"a batch of {len(indices)} does not split evenly over {group.world_size} processes; use a batch size that is a multiple of {group.world_size}")
    size = len(indices) // group.world_size
    return indices[group.rank * size : (group.rank + 1) * size]


@torch.no_grad()
def broadcast_parameters(module: nn.Module, group: Group) -> None:
    """Give every process rank 0's parameters and buffers (as DDP does when it wraps a model)."""
    if not group.is_distributed:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


@torch.no_grad()
def average_gradients(optimizer: torch.optim.Optimizer, world_size: int) -> None:
    """Replace the gradients of ``optimizer``'s parameters by their mean over the processes.

    Every process runs the same code, so the same parameters have gradients everywhere; they are
    packed into one flat buffer, summed with one ``all_reduce`` and divided by ``world_size``.
    """
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_over_processes(values: dict[str, float], group: Group) -> dict[str, float]:
    """The mean of each logged number over the processes: the global batch's mean, for equal shards."""
    if not group.is_distributed or not values:
        return values
    names = sorted(values)
    buffer = torch.tensor([values[name] for name in names], dtype=torch.float64)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return {name: float(v) / group.world_size for name, v in zip(names, buffer)}


def gather(obj: Any, group: Group) -> list[Any]:
    """``obj`` of every process, in rank order (a list of one for a single process)."""
    if not group.is_distributed:
        return [obj]
    out: list[Any] = [None] * group.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(group: Group) -> None:
    """Wait until every process gets here (e.g. until rank 0 has written a checkpoint)."""
    if group.is_distributed:
        dist.barrier()
