"""The one training loop and the one evaluation loop, shared by every pruner.

SGD with Nesterov momentum and weight decay, a multi-step learning-rate schedule given as a
pure function of the schedule epoch (so a resumed or recovering run sets its rate directly),
top-1/top-5/loss, and one history entry per epoch actually trained.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from harness.train.compiled import CompiledTraining
from harness.train.device import Precision
from harness.train.distributed import SINGLE, DataParallel, World
from harness.errors import UserError


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: the run cannot produce a meaningful number."""


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = ()  # schedule epochs at which the rate is multiplied by gamma
    gamma: float = 0.1
    batch_size: int = 128

    def validate(self) -> None:
        if not self.lr > 0:
            raise UserError(f"--lr must be > 0 (got {self.lr})")
        if self.weight_decay < 0:
            raise UserError(f"--weight-decay must be >= 0 (got {self.weight_decay})")
        if not 0 <= self.momentum < 1:
            raise UserError(f"momentum must be in [0, 1) (got {self.momentum})")
        if not 0 < self.gamma <= 1:
            raise UserError(f"--gamma must be in (0, 1] (got {self.gamma})")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1 (got {self.batch_size})")
        if any(m < 1 for m in self.milestones):
            raise UserError(f"--milestones must be epochs >= 1 (got {list(self.milestones)})")

    def lr_at(self, schedule_epoch: int) -> float:
        """Learning rate for the 0-based ``schedule_epoch`` (MultiStepLR semantics)."""
        return self.lr * self.gamma ** sum(schedule_epoch >= m for m in self.milestones)


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.SGD:
    """A fresh SGD optimizer. Pruning replaces parameter tensors, so pruners build a new one after it."""
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay,
    )


def _topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]) -> list[torch.Tensor]:
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hits = top.eq(labels[:, None])
    return [hits[:, : min(k, kmax)].any(dim=1).sum() for k in ks]


@dataclass(frozen=True)
class TrainHooks:
    """A pruner's part in training (`harness.prune.pruner.Pruner`'s lifecycle hooks), bound to
    its run; a field left None costs nothing in the loop."""

    after_backward: Callable[[], None] | None = None  # between backward and optimizer.step (true gradients)
    after_epoch: Callable[[], None] | None = None     # after each training epoch, before its evaluation
    weight_decay: float | None = None                 # replaces the optimizer's weight decay in these epochs


def train_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    lr: float,
    precision: Precision,
    scaler: torch.amp.GradScaler | None = None,
    after_backward: Callable[[], None] | None = None,
    world: World = SINGLE,
) -> dict[str, float]:
    """One pass over ``batches``. Sums stay on the device: no host sync per batch. Data-parallel
    (``world``): ``model`` is the rank's DDP module and the statistics are the whole world's, so
    every rank sees the same loss (and a divergence stops every rank at once)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    scaler = scaler or precision.grad_scaler()
    model.train()
    device = precision.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    start = time.perf_counter()
    for x, y in batches:
        x = precision.prepare_input(x)
        with precision.autocast():
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if after_backward is not None:
            scaler.unscale_(optimizer)  # a regularizer or gradient mask acts on the true gradients
            after_backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach().float() * y.shape[0]
        correct += (logits.detach().float().argmax(1) == y).sum()  # fp32: bf16 logits tie too often
        seen += y.shape[0]
    if world.distributed:
        sums = world.sum_(torch.stack([loss_sum, correct.to(loss_sum.dtype), loss_sum.new_tensor(float(seen))]))
        loss_sum, correct, seen = sums[0], sums[1], int(sums[2])
    mean_loss = float(loss_sum) / max(seen, 1)
    if not math.isfinite(mean_loss):
        raise TrainingDiverged(f"training loss became {mean_loss} at lr={lr:g}")
    seconds = time.perf_counter() - start
    return {
        "train_loss": mean_loss,
        "train_top1": 100.0 * float(correct) / max(seen, 1),
        "images": seen,
        "train_time_s": seconds,
        "images_per_s": seen / seconds if seconds > 0 else float("nan"),
    }


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    precision: Precision,
    world: World = SINGLE,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy in percent and mean cross-entropy over ``batches`` (with
    ``world``: over every rank's share, the sums all-reduced)."""
    was_training = model.training
    model.eval()
    device = precision.device
    loss_sum = torch.zeros((), device=device)
    c1 = torch.zeros((), device=device, dtype=torch.long)
    c5 = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in batches:
        with precision.autocast():
            logits = model(precision.prepare_input(x))
        logits = logits.float()  # metrics in fp32: bf16 logits (8 mantissa bits) tie and reorder classes
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        top1, top5 = _topk_correct(logits, y, (1, 5))
        c1 += top1
        c5 += top5
        seen += y.shape[0]
    model.train(was_training)
    if world.distributed:
        sums = world.sum_(torch.stack([loss_sum.float(), c1.float(), c5.float(), loss_sum.new_tensor(float(seen))]))
        loss_sum, c1, c5, seen = sums[0], sums[1], sums[2], int(sums[3])
    n = max(seen, 1)
    return {"top1": 100.0 * float(c1) / n, "top5": 100.0 * float(c5) / n, "loss": float(loss_sum) / n}


def loss_passes(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], precision: Precision,
                backward: bool = False) -> float:
    """Forward passes outside training, in the model's current mode (data-driven pruning scores:
    activations through forward hooks, gradients with ``backward``, accumulated in ``.grad``).

    Returns the mean cross-entropy over the images.
    """
    total = 0.0
    seen = 0
    for x, y in batches:
        with torch.set_grad_enabled(backward), precision.autocast():
            loss = F.cross_entropy(model(precision.prepare_input(x)).float(), y)
        if backward:
            loss.backward()
        total += float(loss.detach()) * y.shape[0]
        seen += y.shape[0]
    return total / max(seen, 1)


EpochHook = Callable[[dict[str, Any]], None]


@dataclass
class TrainingState:
    """What a run carries from epoch to epoch; enough to checkpoint and resume."""

    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs_trained: int = 0
    train_time_s: float = 0.0
    scaler: torch.amp.GradScaler | None = None  # one per run (fp16 only), saved with the run's state


class Engine:
    """Binds a model's data, optimiser settings and precision; runs epochs and evaluations."""

    def __init__(self, data, optim: OptimConfig, precision: Precision, seed: int,
                 eval_batch_size: int = 512, progress: bool = True, compile: bool = False, world: World = SINGLE):
        self.compiler = CompiledTraining(compile and not world.distributed)
        if compile and world.distributed:  # DDP with synchronized batch norm trains eagerly
            self.compiler.enabled, self.compiler.fallback = True, "not with --workers > 1 (data-parallel training)"
        self.world = world
        self.parallel = DataParallel(world, precision.device)
        self.data = data
        self.optim = optim
        self.precision = precision
        self.seed = seed
        self.eval_batch_size = eval_batch_size
        self.progress = progress

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Test metrics; data-parallel, each rank evaluates its share of the test set."""
        if not self.world.distributed:
            return evaluate(model, self.data.test_batches(self.eval_batch_size), self.precision)
        batches = self.data.test_batches(self.eval_batch_size, rank=self.world.rank, world=self.world.size)
        return evaluate(model, batches, self.precision, self.world)

    def train_batches(self, epoch_seed: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's batches of an epoch: the global batch (``optim.batch_size``, the recipe's,
        so the learning-rate schedule holds) split evenly across the ranks."""
        if not self.world.distributed:
            return self.data.train_batches(self.optim.batch_size, epoch_seed)
        return self.data.train_batches(self.optim.batch_size // self.world.size, epoch_seed,
                                       rank=self.world.rank, world=self.world.size)

    def run_epochs(
        self,
        state: TrainingState,
        schedule_epochs: Iterable[int],
        phase: str,
        fixed_lr: float | None = None,
        fresh_optimizer: bool = False,
        extra: Callable[[], dict[str, Any]] | None = None,
        on_epoch_end: EpochHook | None = None,
        hooks: TrainHooks | None = None,
        final_shapes: bool = False,
    ) -> None:
        """Train one epoch per entry of ``schedule_epochs`` and evaluate after each.

        ``fixed_lr`` pins the rate (LAASP's recovery trains at the rate of ``prune_epoch``);
        otherwise the multi-step schedule gives it. ``extra`` adds fields (FLOPs, params) to
        each history entry; ``on_epoch_end`` receives the entry (reporting, checkpointing);
        ``hooks`` are the pruner's (regularizers, gradient masks, soft masks at epoch end).
        ``final_shapes``: no structural change follows, so a compiled step (``compile``) may train.
        """
        hooks = hooks or TrainHooks()
        self.precision.prepare_model(state.model)  # in place: the optimizer's parameters stay valid
        if fresh_optimizer or state.optimizer is None:
            state.optimizer = make_optimizer(state.model, self.optim)
        if hooks.weight_decay is not None:
            for group in state.optimizer.param_groups:
                group["weight_decay"] = hooks.weight_decay
        if state.scaler is None:  # kept across calls: LAASP's recovery epochs continue the same scale
            state.scaler = self.precision.grad_scaler()
        scaler = state.scaler
        epochs = list(schedule_epochs)
        for schedule_epoch in _progress(epochs, phase, self.progress):
            lr = fixed_lr if fixed_lr is not None else self.optim.lr_at(schedule_epoch)
            # The shuffle depends on the seed and the count of epochs trained, so a resumed
            # run draws the same batches it would have drawn without the interruption.
            epoch_seed = self.seed * 1_000_003 + state.epochs_trained
            # The compiled (or DDP) module shares the model's parameters: optimizer and checkpoints see one model.
            with self.parallel.training(state.model) as trained:
                if final_shapes and not self.world.distributed:
                    trained = self.compiler.module(state.model)
                stats = train_epoch(trained, self.train_batches(epoch_seed), state.optimizer, lr, self.precision,
                                    scaler, hooks.after_backward, self.world)
            state.epochs_trained += 1
            state.train_time_s += stats["train_time_s"]
            if hooks.after_epoch is not None:  # e.g. soft masks: the evaluation sees the masked network
                hooks.after_epoch()
            test = self.evaluate(state.model)
            entry = {"epoch": state.epochs_trained, "schedule_epoch": schedule_epoch, "phase": phase,
                     "lr": lr, **stats, "test_top1": test["top1"], "test_top5": test["top5"],
                     "test_loss": test["loss"]}
            if extra is not None:
                entry.update(extra())
            state.history.append(entry)
            if self.progress:
                tqdm_write(f"[{phase}] epoch {state.epochs_trained} lr={lr:.4g} loss={stats['train_loss']:.4f} "
                           f"top1={test['top1']:.2f}% ({stats['images_per_s']:.0f} img/s)")
            if on_epoch_end is not None:
                on_epoch_end(entry)


def _progress(items: list[int], phase: str, enabled: bool) -> Iterator[int]:
    if not enabled or not items:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=phase, unit="epoch", leave=False, dynamic_ncols=True)


def tqdm_write(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line)
