"""Candidate losses, fast: masks instead of copies, and cached activations of the unchanged prefix.

The network is cut into a chain of stages (stem layers, residual blocks, head) whose
composition reproduces ``model(x)``; it is checked once against the real forward pass and,
if a model does not decompose, the whole model is one stage. For each chunk of the loss
subset the input of every stage is computed once; a candidate then re-runs only the stages
from the first one its removal touches, with its channels zeroed. Loss sums are float64.

Exact mode evaluates every distinct candidate on the whole subset: the same decision as the
authors' copy-and-prune loop. Approximate mode races the candidates (`laasp.racing`): all see
the first images, the better part goes on to see more, and so on until one is left or the
whole subset is used.

On CUDA every candidate loss is computed in true fp32 (TF32 off, `exact_fp32`), whatever the
run's training precision: the pick must not depend on rounding that CPU runs do not have.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from harness.prune.prunable import Removal
from harness.train.device import exact_fp32
from harness.train.memory import available_bytes
from laasp.rows import plan_rows, profile_activations

log = logging.getLogger("laasp")


def forward_chain(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Top-level children in order, Sequentials flattened, checked against ``model(example)``.

    A global average pool + flatten is inserted before the first Linear: it is what every
    model of the zoo does there (and a no-op on an already pooled 1x1 map).
    """
    stages: list[nn.Module] = []

    def add(module: nn.Module) -> None:
        if isinstance(module, nn.Sequential):
            for child in module:
                add(child)
        else:
            if isinstance(module, nn.Linear) and not any(isinstance(s, _PoolFlatten) for s in stages):
                stages.append(_PoolFlatten())
            stages.append(module)

    for child in model.children():
        add(child)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        x = example
        try:
            for stage in stages:
                x = stage(x)
            ok = x.shape == model(example).shape and torch.allclose(x, model(example), rtol=1e-4, atol=1e-5)
        except Exception:  # a model whose children do not compose: use it whole
            ok = False
    model.train(was_training)
    return stages if ok else [model]


class _PoolFlatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1).flatten(1) if x.dim() == 4 else x


@dataclass
class Candidate:
    """One distinct network change, possibly reached by several (layer, criterion) pairs."""

    removal: Removal
    sources: list[tuple[str, str]]  # (layer, criterion), in the authors' loop order
    first_stage: int = 0
    loss_sum: float = 0.0
    images: int = 0
    per_image: list[torch.Tensor] = field(default_factory=list)  # float64, one per pass, kept only while racing

    @property
    def loss(self) -> float:
        return self.loss_sum / self.images if self.images else float("inf")


class CandidateEvaluator:
    """Loss of the model with each candidate's channels zeroed, on a fixed subset.

    Candidates that start at the same stage run together: their inputs are stacked along the
    batch dimension and each row block gets its own channel mask (a multiplication by 1 or 0,
    exact), so small image counts still make large batches. ``max_batch`` is the preferred number
    of rows per forward; on CUDA it is capped by the memory this process may use (`laasp.rows`).
    """

    def __init__(self, model: nn.Module, subset_x: torch.Tensor, subset_y: torch.Tensor, chunk_size: int,
                 max_batch: int | None = None):
        self.model = model
        self.x, self.y = subset_x, subset_y
        self.device = subset_x.device
        self.chunk_size = chunk_size
        if max_batch is None:  # measured: past ~256 rows CPU convolutions leave the cache; GPUs want more
            max_batch = 256 if self.device.type == "cpu" else 2048
        self.max_batch = max_batch
        self.plan: tuple[int, int] | None = None  # (images per chunk, rows per forward) of the last pass
        with exact_fp32(self.device):
            self.stages = forward_chain(model, subset_x[: min(8, len(subset_x))])
            was_training = model.training
            model.eval()
            with torch.inference_mode():
                self.profile = profile_activations(self.stages, subset_x)
            model.train(was_training)
        self.stage_of: dict[nn.Module, int] = {}
        for i, stage in enumerate(self.stages):
            for m in stage.modules():
                self.stage_of.setdefault(m, i)
        self._active: dict[nn.Module, torch.Tensor] = {}
        self.keep_per_image = False  # a race's confidence bound needs each image's loss
        # None: true fp32 (exact selection's contract). A dtype runs the forwards under autocast:
        # a race with --approx-precision bf16 (laasp.racing), or a benchmark's bf16 scoring pass.
        self.autocast_dtype: torch.dtype | None = None

    def _hook(self, module: nn.Module, _inp, out: torch.Tensor) -> torch.Tensor:
        mask = self._active.get(module)
        if mask is None:
            return out
        # out stacks len(batch) candidates of `rows` images each; candidate j's rows get mask[j]
        n, channels = mask.shape
        per_candidate = out.view(n, -1, *out.shape[1:])
        return (per_candidate * mask.view(n, 1, channels, *(1,) * (out.dim() - 2)).to(out.dtype)).reshape(out.shape)

    def _masks(self, batch: list[Candidate]) -> dict[nn.Module, torch.Tensor]:
        """Per module, a (candidates, channels) 0/1 mask: candidate j zeroes its channels.

        Filled on the CPU and moved once per module: indexing a GPU tensor with a Python list
        is a blocking copy per candidate and module.
        """
        per_module: dict[nn.Module, torch.Tensor] = {}
        for j, cand in enumerate(batch):
            for m, idx in cand.removal.masks:
                if m not in per_module:
                    channels = m.num_features if isinstance(m, nn.BatchNorm2d) else m.out_channels
                    per_module[m] = torch.ones(len(batch), channels)
                per_module[m][j, list(idx)] = 0.0
        return {m: mask.to(self.device) for m, mask in per_module.items()}

    def _plan(self, deepest_first: int) -> tuple[int, int]:
        """(images per chunk, rows per forward) that fit now; warns once when the chunk had to shrink."""
        chunk, rows = plan_rows(self.profile, available_bytes(self.device), self.chunk_size, self.max_batch,
                                deepest_first)
        if chunk < self.chunk_size and (self.plan is None or self.plan[0] >= self.chunk_size):
            log.warning("candidate evaluation: %d images per chunk instead of --chunk-size %d, to fit the memory "
                        "this process may use", chunk, self.chunk_size)
        self.plan = (chunk, rows)
        return chunk, rows

    def losses(self, candidates: list[Candidate], n_images: int | None = None, start_image: int = 0) -> None:
        """Add to each candidate's loss sum the loss on images [start_image, n_images)."""
        n_images = len(self.x) if n_images is None else min(n_images, len(self.x))
        for cand in candidates:
            cand.first_stage = min(self.stage_of.get(m, 0) for m, _ in cand.removal.masks) if cand.removal.masks else 0
        by_stage: dict[int, list[Candidate]] = {}
        for cand in candidates:
            by_stage.setdefault(cand.first_stage, []).append(cand)
        masked = {m for c in candidates for m, _ in c.removal.masks}
        masks: dict[tuple[int, int, int], dict[nn.Module, torch.Tensor]] = {}
        last_first = max(by_stage, default=0)
        chunk, max_rows = self._plan(last_first)
        # Each candidate's kept losses go to one buffer made before any activation: kept per chunk,
        # small tensors split the freed activation blocks and a CPU process grew by GBs over 20 chunks.
        kept = ({id(c): torch.empty(n_images - start_image, dtype=torch.float64) for c in candidates}
                if self.keep_per_image else None)
        handles = [m.register_forward_hook(self._hook) for m in masked]
        was_training = self.model.training
        self.model.eval()  # batch norm uses its running statistics: a deterministic loss
        try:
            with torch.inference_mode(), self._precision():
                for lo in range(start_image, n_images, chunk):
                    hi = min(lo + chunk, n_images)
                    rows = hi - lo
                    x, y = self.x[lo:hi], self.y[lo:hi]
                    inputs = [x]
                    for stage in self.stages[:last_first]:  # clean activations up to the latest first stage
                        inputs.append(stage(inputs[-1]))
                    per_batch = max(1, max_rows // rows)
                    for first, group in by_stage.items():
                        for k in range(0, len(group), per_batch):
                            key = (first, k, per_batch)  # the same candidates in every full chunk
                            if key not in masks:
                                masks[key] = self._masks(group[k:k + per_batch])
                            self._run_batch(group[k:k + per_batch], inputs[first], y, first, masks[key],
                                            None if kept is None else (kept, lo - start_image))
                    self._active = {}
            for cand in candidates if kept is not None else []:
                cand.per_image.append(kept[id(cand)])
        finally:
            for h in handles:
                h.remove()
            self._active = {}
            self.model.train(was_training)

    def _precision(self):
        if self.autocast_dtype is None:
            return exact_fp32(self.device)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _run_batch(self, batch: list[Candidate], stage_input: torch.Tensor, y: torch.Tensor, first: int,
                   masks: dict[nn.Module, torch.Tensor], kept: tuple[dict[int, torch.Tensor], int] | None) -> None:
        rows = stage_input.shape[0]
        self._active = masks
        h = stack_rows(stage_input, len(batch))
        for stage in self.stages[first:]:
            h = stage(h)
        with torch.autocast(self.device.type, enabled=False):  # float64 losses under any autocast
            per_image = F.cross_entropy(h.double(), y.repeat(len(batch)), reduction="none").view(len(batch), rows)
        for j, (cand, loss) in enumerate(zip(batch, per_image.sum(1).tolist())):
            cand.loss_sum += loss
            cand.images += rows
            if kept is not None:
                kept[0][id(cand)][kept[1]:kept[1] + rows].copy_(per_image[j])

    def exact(self, candidates: list[Candidate]) -> Candidate:
        self.losses(candidates)
        return best(candidates)


def stack_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` copies of ``x`` along the batch dimension, in x's memory format.

    ``expand().reshape()`` would return a contiguous (NCHW) tensor, and every convolution of a
    channels_last model would then convert it back: a layout copy per stage.
    """
    if n == 1:
        return x
    fmt = torch.contiguous_format
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        fmt = torch.channels_last
    out = torch.empty((n * x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=fmt)
    out.view(n, *x.shape).copy_(x.unsqueeze(0).expand(n, *x.shape))
    return out


def best(candidates: list[Candidate]) -> Candidate:
    """Smallest loss; ties go to the first in the authors' loop order (layer, then criterion)."""
    return min(candidates, key=lambda c: c.loss)
