"""Training augmentation as whole-batch tensor ops on uint8 images (N, C, H, W).

Small datasets live on the training device, so augmenting image by image in Python would
dominate an epoch; instead every op here is a handful of tensor kernels over the batch.
Random draws come from a CPU `torch.Generator` and are then moved to the images' device,
so a CPU run and a CUDA run with the same seed see exactly the same crops and flips. A
training epoch draws all its batches' crops and flips up front and moves them in one copy
(`draw_augment`, `apply_augment`): a host-to-device copy per batch would wait each time for
the GPU's queue to drain.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def crop_offsets(n: int, pad: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Per-image window offsets ``(dy, dx)`` in ``[0, 2*pad]`` into the zero-padded image.

    An offset of ``pad`` is the identity; ``pad - dy`` is how far the content moves down.
    """
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    return dy, dx


def crop(x: Tensor, dy: Tensor, dx: Tensor, pad: int) -> Tensor:
    """Random-crop with zero padding: ``out[n, :, i, j] = padded[n, :, i + dy[n], j + dx[n]]``.

    Done with two ``gather`` calls on the padded batch (rows, then columns), so the cost is
    independent of the batch size in Python terms and it runs unchanged on CUDA.
    """
    if pad == 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = dy.to(x.device), dx.to(x.device)
    rows = dy.view(n, 1, 1, 1) + torch.arange(h, device=x.device).view(1, 1, h, 1)
    out = padded.gather(2, rows.expand(n, c, h, w + 2 * pad))
    cols = dx.view(n, 1, 1, 1) + torch.arange(w, device=x.device).view(1, 1, 1, w)
    return out.gather(3, cols.expand(n, c, h, w))


def flip_mask(n: int, gen: torch.Generator) -> Tensor:
    """Which images of a batch get mirrored (each with probability 1/2)."""
    return torch.rand(n, generator=gen) < 0.5


def hflip(x: Tensor, mask: Tensor) -> Tensor:
    """Mirror the images selected by ``mask`` left-right; the others pass through."""
    return torch.where(mask.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)


def draw_augment(n: int, pad: int, flip: bool, gen: torch.Generator) -> Tensor:
    """The random draws of one batch of ``n`` images as a (3, n) int64 tensor: crop dy, dx, flip flag.

    Draw order is fixed (crop offsets, then flip mask; each only when used) so a seed pins the
    whole batch, whether a batch's draws are made alone or with the rest of its epoch's.
    """
    dy, dx = crop_offsets(n, pad, gen) if pad else (torch.zeros(n, dtype=torch.long),) * 2
    flips = flip_mask(n, gen).long() if flip else torch.zeros(n, dtype=torch.long)
    return torch.stack([dy, dx, flips])


def apply_augment(x: Tensor, draws: Tensor, pad: int, flip: bool) -> Tensor:
    """Crop and flip ``x`` as ``draws`` (from `draw_augment`, best already on x's device) say."""
    out = crop(x, draws[0], draws[1], pad) if pad else x
    return hflip(out, draws[2].bool()) if flip else out


def augment(x: Tensor, pad: int, flip: bool, gen: torch.Generator) -> Tensor:
    """The standard small-image training augmentation: random crop (``pad``), optional flip."""
    return apply_augment(x, draw_augment(x.shape[0], pad, flip, gen).to(x.device), pad, flip)


def normalize(x: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """uint8 images -> float32 ``(x/255 - mean) / std`` per channel, on the images' device.

    Pass mean/std as tensors already on the device to avoid a host copy per batch.
    """
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float().div_(255.0) - m).div_(s)


def channel_stats(x: Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units.

    Accumulated in float64 chunk by chunk so a 50k-image set never needs a float copy.
    """
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for part in x.split(chunk):
        v = part.to(torch.float64).div_(255.0).transpose(0, 1).reshape(c, -1)
        total += v.sum(1).cpu()
        total_sq += v.square().sum(1).cpu()
    count = x.numel() // c
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())
