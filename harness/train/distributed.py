"""One run as N data-parallel processes: who this process is (`World`), the collectives the
harness uses, and the training wrapper (DDP with synchronized batch norm).

Every rank runs the same job code on the same network. Training splits each global batch
across the ranks and DDP averages the gradients; decisions (a pruner's choice, a removal plan)
are made on rank 0 and broadcast (`World.decide`), so ranks never disagree; evaluation is
sharded and its sums all-reduced. With one process every helper here is a no-op.

**Batch norm is synchronized** while training: the batch statistics are those of the whole
global batch, as in the single-GPU runs of the LAASP authors and of the papers the baselines
come from, so the world size does not change what a run computes (up to rounding).
`synced_batch_norm` swaps each batch norm's forward for the training epochs only; outside them
(pruning, evaluation, checkpoints) the network holds plain `nn.BatchNorm*d` modules.
"""
from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run (rank 0 of 1 when it runs alone)."""

    rank: int = 0
    size: int = 1
    backend: str | None = None  # nccl | gloo; None when alone
    local_rank: int = 0         # the GPU index of this rank on its machine

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes records, checkpoints and progress."""
        return self.rank == 0

    def describe(self, batch_size: int) -> dict[str, Any]:
        """The record's ``distributed`` block (``batch_size``: the run's global batch)."""
        return {"world_size": self.size, "backend": self.backend, "per_rank_batch": batch_size // self.size,
                "batch_norm": "synchronized" if self.distributed else "plain"}

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (pickled)."""
        if not self.distributed:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def decide(self, choose: Callable[[], T]) -> T:
        """``choose()`` called on rank 0 only, its answer on every rank."""
        return self.broadcast(choose() if self.main else None)

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank (pickled)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce (sum) in place; NCCL needs ``tensor`` on this rank's GPU."""
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block before the others (it builds a cache they then read)."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()


SINGLE = World()


def current_world() -> World:
    """The process group this process belongs to, or `SINGLE`."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return SINGLE
    rank = dist.get_rank()
    return World(rank, dist.get_world_size(), dist.get_backend(), int(os.environ.get("LOCAL_RANK", rank)))


# ----------------------------------------------------------------------------- batch norm
class _SumAcrossRanks(torch.autograd.Function):
    """all_reduce(sum) with its gradient: every rank's statistics feed every rank's output."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _momentum(bn: nn.modules.batchnorm._BatchNorm) -> float:
    """The running-average factor of this step (nn.BatchNorm's rule, counting the step)."""
    if bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            return 1.0 / float(bn.num_batches_tracked)
    return 0.0 if bn.momentum is None else bn.momentum


def _synced_forward(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    if not bn.training:
        return type(bn).forward(bn, x)
    momentum = _momentum(bn)
    running = bn.track_running_stats
    if x.is_cuda:  # the fused kernels nn.SyncBatchNorm itself calls, with its arguments
        from torch.nn.modules._functions import SyncBatchNorm as FusedSync

        return FusedSync.apply(x, bn.weight, bn.bias, bn.running_mean if running else None,
                               bn.running_var if running else None, bn.eps, momentum, dist.group.WORLD,
                               dist.get_world_size())
    # CPU (gloo): nn.SyncBatchNorm is GPU only. Shifted sums (by the running mean, near the batch
    # mean) keep E[x^2] - E[x]^2 from cancelling; the statistics are fp32 whatever the input.
    dims = [0, *range(2, x.dim())]
    shape = (1, -1, *([1] * (x.dim() - 2)))
    xf = x.float()
    shift = bn.running_mean.detach().float().view(shape) if running else xf.new_zeros(shape)
    centred = xf - shift
    count = xf.new_full((1,), x.numel() // x.shape[1])
    total = _SumAcrossRanks.apply(torch.cat([centred.sum(dims), (centred * centred).sum(dims), count]))
    channels = x.shape[1]
    n = total[-1]
    mean_c = total[:channels] / n
    var = total[channels:2 * channels] / n - mean_c * mean_c
    y = (centred - mean_c.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.weight is not None:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    if running:
        with torch.no_grad():
            mean = mean_c.detach() + shift.view(-1)
            unbiased = var.detach() * n / (n - 1).clamp(min=1)
            bn.running_mean.mul_(1 - momentum).add_(mean.to(bn.running_mean.dtype), alpha=momentum)
            bn.running_var.mul_(1 - momentum).add_(unbiased.to(bn.running_var.dtype), alpha=momentum)
    return y.to(x.dtype)


@contextlib.contextmanager
def synced_batch_norm(model: nn.Module) -> Iterator[None]:
    """Every batch norm of ``model`` normalizes with the statistics of all ranks' batches, for
    the block's duration (the modules themselves stay plain batch norms)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.forward = functools.partial(_synced_forward, bn)
    try:
        yield
    finally:
        for bn in bns:
            bn.__dict__.pop("forward", None)


# ----------------------------------------------------------------------------- DDP
class DataParallel:
    """The module a data-parallel rank trains: DDP around the model, rebuilt whenever its
    parameters changed (pruning replaces them). A new wrapper broadcasts rank 0's parameters
    and buffers and checks that every rank holds the same shapes, so a structural change
    that differed between ranks stops the run instead of training two networks."""

    def __init__(self, world: World, device: torch.device):
        self.world, self.device = world, device
        self._wrapped: tuple[nn.Module, list[nn.Parameter], nn.Module] | None = None  # (model, params, ddp)

    def module(self, model: nn.Module) -> nn.Module:
        if not self.world.distributed:
            return model
        params = list(model.parameters())
        if self._wrapped is not None:
            old_model, old_params, ddp = self._wrapped
            # the old list keeps the old tensors alive, so an identity match is never a reused id
            same = len(old_params) == len(params) and all(a is b for a, b in zip(old_params, params))
            if old_model is model and same:
                return ddp
        self._wrapped = None  # drop the old reducer before building the new one
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)
        self._wrapped = (model, params, ddp)
        return ddp

    @contextlib.contextmanager
    def training(self, model: nn.Module) -> Iterator[nn.Module]:
        """The module to train this epoch, batch norm synchronized when distributed."""
        if not self.world.distributed:
            yield model
            return
        ddp = self.module(model)
        with synced_batch_norm(model):
            yield ddp
