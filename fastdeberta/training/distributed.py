"""Data-parallel training over ``torch.distributed``: what the shared loop needs, and nothing more.

Launch a training command under ``torchrun``; every process runs the same command line:

    torchrun --standalone --nproc-per-node 2 -m fastdeberta pretrain ...            # one machine
    torchrun --nnodes 2 --node-rank R --rdzv-endpoint HOST:29500 --nproc-per-node 1 \\
        -m fastdeberta pretrain ...                                                   # two machines

How the loop uses it (``fastdeberta.training.loop``):

* ``batch_size`` is per process (transformers' ``per_device_train_batch_size``): an optimizer step
  sees ``batch_size x world_size x gradient_accumulation_steps`` examples. Micro-batch ``m`` of the
  run is the ``m``-th block of ``batch_size x world_size`` examples of the epoch's permutation and
  process ``r`` takes the ``r``-th part (``shard``); the last block of an epoch wraps around to the
  epoch's first examples so every process has the same number (as ``DistributedSampler`` pads).
* After backward the gradients are averaged over the processes (``average_gradients``: one
  all-reduce per flat bucket, after the whole step rather than overlapped with backward -- any
  ``compute_loss`` works, whatever submodules it calls). Every replica applies the same update, so
  they stay identical; the checkpoints are those of a single model.
* Randomness differs per process where it should: dropout (torch's global generator seeded with
  ``seed + rank``) and the masking generator of micro-batch ``m`` (stream ``m x world + rank``).
  With one process both reduce to the single-process loop, bit for bit.
* Only rank 0 touches the output folder: metrics, checkpoints, the best and final models. On
  resume rank 0 reads the checkpoint and sends weights, optimizer, scheduler, loop state and each
  process's random state to the others (``rng.pt`` keeps one state per rank), so the machines need
  not share a filesystem -- only the training data, which every process reads itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistContext", "all_gather_objects", "average_gradients", "broadcast_module",
           "broadcast_object", "context", "gather_objects", "init_from_environment", "launched", "leave",
           "main_first", "on_main", "reduce_sums", "shard"]

_BUCKET_BYTES = 32 * 2**20
_RAN_DISTRIBUTED = False


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def context() -> DistContext:
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size())
    return DistContext()


def init_from_environment(device: str = "cpu") -> tuple[DistContext, str]:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1);
    returns the context and the device this process should use (``cuda`` becomes ``cuda:LOCAL_RANK``).
    Without those variables (a plain run) it does nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistContext(), device
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run a single process")
    cuda = device.startswith("cuda")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise RuntimeError(
                f"WORLD_SIZE={world} is set but {', '.join(missing)} is not: launch with torchrun "
                "(e.g. `torchrun --standalone --nproc-per-node 2 -m fastdeberta pretrain ...`), which sets them all")
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return context(), device


@contextmanager
def launched(device: str = "cpu") -> Iterator[tuple[DistContext, str]]:
    """``init_from_environment`` for the length of a command; leaves the process group at the end."""
    global _RAN_DISTRIBUTED
    ctx, device = init_from_environment(device)
    _RAN_DISTRIBUTED = _RAN_DISTRIBUTED or ctx.active
    try:
        yield ctx, device
        if ctx.active:
            # everyone reaches teardown before anyone leaves: a process that tore down while a peer's gloo
            # thread still waited on it was seen to abort ("terminate called without an active exception")
            dist.barrier()
    finally:
        if ctx.active and dist.is_initialized():
            dist.destroy_process_group()


def leave(code: int) -> int:
    """End a command: after a data-parallel run, flush and leave with ``os._exit(code)``. With torch 2.13
    and gloo, about 1 process in 80 aborted (SIGABRT, "terminate called without an active exception")
    during interpreter finalization -- after its work was done, files written and the process group
    destroyed (faulthandler: no Python frame) -- and torchrun then reports the whole job as failed.
    Leaving without finalization avoids that. Otherwise returns ``code``."""
    if not _RAN_DISTRIBUTED:
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def on_main(ctx: DistContext, work: Callable[[], Any]) -> Any:
    """Run ``work`` on rank 0 and hand its result (or its failure) to every process, so that an error
    there stops the whole job with the same message instead of leaving the others waiting."""
    if not ctx.active:
        return work()
    outcome: tuple[str, Any] | None = None
    error: BaseException | None = None
    if ctx.main:
        try:
            outcome = ("ok", work())
        except Exception as failure:                 # re-raised below, after the others have heard of it
            error = failure
            outcome = ("error", f"{type(failure).__name__}: {failure}")
    kind, value = broadcast_object(outcome, ctx)
    if error is not None:
        raise error
    if kind == "error":
        raise RuntimeError(f"rank 0 failed, so this process stops too: {value}")
    return value


def main_first(ctx: DistContext, work: Callable[[], Any]) -> Any:
    """``work()`` on rank 0 first, then on the others (e.g. packing data into a folder they may share);
    a failure on rank 0 stops the others with its message (``on_main``). Only the outcome travels, not
    the result."""
    done: list[Any] = []
    on_main(ctx, lambda: done.append(work()))
    return done[0] if done else work()


def shard(order: Sequence[int], block: int, size: int, ctx: DistContext) -> list[int]:
    """Indices of this process's part of block ``block`` (``size x world_size`` examples) of ``order``.

    One process: the plain slice (a short last block stays short). Several: positions past the end
    wrap around to the start of ``order``, so every process gets exactly ``size`` examples."""
    if not ctx.active:
        return list(order[block * size:(block + 1) * size])
    start = (block * ctx.world_size + ctx.rank) * size
    return [order[j % len(order)] for j in range(start, start + size)]


def _bucketed(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    buckets: list[list[torch.Tensor]] = []
    current: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        if current and (t.dtype != current[0].dtype or t.device != current[0].device
                        or size + t.numel() * t.element_size() > _BUCKET_BYTES):
            buckets.append(current)
            current, size = [], 0
        current.append(t)
        size += t.numel() * t.element_size()
    if current:
        buckets.append(current)
    return buckets


def average_gradients(params: Sequence[nn.Parameter], ctx: DistContext) -> None:
    """Replace every gradient by its mean over the processes.

    A parameter without a gradient on some process (unused in its forward) counts as zero there; one
    without a gradient anywhere keeps ``grad=None``, so the optimizer skips it as it would alone."""
    if not ctx.active:
        return
    device = params[0].device if params else torch.device("cpu")
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=device)
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    grads = []
    for p, anywhere in zip(params, present.tolist()):
        if anywhere and p.grad is None:
            p.grad = torch.zeros_like(p)
        if anywhere:
            grads.append(p.grad)
    for bucket in _bucketed(grads):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat /= ctx.world_size
        offset = 0
        for g in bucket:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def reduce_sums(values: Sequence[float], ctx: DistContext, device: torch.device | str = "cpu") -> list[float]:
    """Element-wise sums over the processes (float64), e.g. losses and token counts for the log."""
    if not ctx.active:
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_object(obj: Any, ctx: DistContext, device: torch.device | str | None = None) -> Any:
    """Rank 0's ``obj`` on every process (pickled; for small things and state dicts)."""
    if not ctx.active:
        return obj
    box = [obj if ctx.main else None]
    dist.broadcast_object_list(box, src=0, device=device)
    return box[0]


def gather_objects(obj: Any, ctx: DistContext) -> list[Any] | None:
    """Every process's ``obj`` on rank 0 (in rank order); ``None`` elsewhere."""
    if not ctx.active:
        return [obj]
    boxes: list[Any] | None = [None] * ctx.world_size if ctx.main else None
    dist.gather_object(obj, boxes, dst=0)
    return boxes


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every process's ``obj``, on every process (in rank order)."""
    if not ctx.active:
        return [obj]
    boxes: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(boxes, obj)
    return boxes


def broadcast_module(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers into every other process's module (in place)."""
    if not ctx.active:
        return
    with torch.no_grad():
        seen: set[int] = set()
        for tensor in module.state_dict(keep_vars=True).values():
            if id(tensor) in seen:                 # tied weights: once
                continue
            seen.add(id(tensor))
            dist.broadcast(tensor.data, src=0)
