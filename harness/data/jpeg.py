"""ImageNet input that can feed a GPU (``--decoder torchvision``): file bytes decoded by
torchvision.io, then random-resized-crop, flip and normalisation on whole batches.

The PIL path (`harness.data.datasets.StreamingDataset`) opens, decodes, crops and resizes each
image in a DataLoader worker. Here a worker only reads bytes when the run is on a GPU: the
batch is decoded there in one ``decode_jpeg(list, device="cuda")`` call (nvJPEG) and resampled
by two batched matrix products per chunk of images. On a CPU a worker decodes and resamples its
whole batch (PyTorch's SIMD uint8 resize, image by image: on a CPU that beats the matrix
products several times over). Either way the resampling is PyTorch's antialiased bilinear
filter, the one torchvision's tensor transforms use; the two devices agree to one grey level.

The augmentation is the PIL path's: torchvision's RandomResizedCrop(224) (scale 0.08-1, ratio
3/4-4/3, ten attempts, then a centre crop), a horizontal flip with probability 1/2, and
Resize(256) + CenterCrop(224) for evaluation, each drawn vectorised. All draws of an epoch are
made up front from one CPU generator, in the order of the epoch's permutation, so a batch does
not depend on the device, the worker count or the number of ranks sharing the epoch.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.data.config import DECODERS, Batch
from harness.data.datasets import StreamingDataset, shard_positions, shard_range
from harness.data.files import _decode_one

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
LOG_RATIO = (math.log(RATIO[0]), math.log(RATIO[1]))
ATTEMPTS = 10  # torchvision's RandomResizedCrop tries ten boxes before its centre-crop fallback
CHUNK_BYTES = 1 << 30  # float32 padded images per batched resampling (GPU)
JPEG_MAGIC = (0xFF, 0xD8, 0xFF)


# --------------------------------------------------------------------------- geometry


def draw_crops(n: int, gen: torch.Generator) -> Tensor:
    """The random numbers of ``n`` training crops, (n, 2 * ATTEMPTS + 3): per attempt a scale and a
    log aspect ratio, then uniforms for the top and left offsets and the flip."""
    scale = torch.empty(n, ATTEMPTS).uniform_(*SCALE, generator=gen)
    log_ratio = torch.empty(n, ATTEMPTS).uniform_(*LOG_RATIO, generator=gen)
    return torch.cat([scale, log_ratio, torch.rand(n, 3, generator=gen)], dim=1)


def flips_of(draws: Tensor) -> Tensor:
    return draws[:, -1] < 0.5


def random_resized_geometry(draws: Tensor, sizes: Tensor, out: int) -> Tensor:
    """torchvision's RandomResizedCrop.get_params for a batch, as (n, 2, 4) int64 geometry.

    Per axis (rows, then columns): the region ``[lo, lo + size)`` is resized to ``resized`` pixels
    and the output is ``resized[start:start + out]``; here the box resized to ``out``, start 0.
    """
    h_img, w_img = sizes[:, 0:1].double(), sizes[:, 1:2].double()
    area = h_img * w_img * draws[:, :ATTEMPTS].double()
    ratio = draws[:, ATTEMPTS:2 * ATTEMPTS].double().exp()
    w = (area * ratio).sqrt().round()
    h = (area / ratio).sqrt().round()
    ok = (w > 0) & (w <= w_img) & (h > 0) & (h <= h_img)
    first = ok.double().argmax(dim=1, keepdim=True)  # the first attempt that fits
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    found = ok.any(dim=1)
    fh, fw = _fallback_box(sizes)
    h, w = torch.where(found, h, fh), torch.where(found, w, fw)
    hi, wi = sizes[:, 0].double(), sizes[:, 1].double()
    top = torch.where(found, (draws[:, -3].double() * (hi - h + 1)).floor(), ((hi - h) / 2).floor())
    left = torch.where(found, (draws[:, -2].double() * (wi - w + 1)).floor(), ((wi - w) / 2).floor())
    full = torch.full_like(h, out)
    zero = torch.zeros_like(h)
    return torch.stack([torch.stack([top, h, full, zero], 1), torch.stack([left, w, full, zero], 1)], 1).long()


def _fallback_box(sizes: Tensor) -> tuple[Tensor, Tensor]:
    """The centre crop RandomResizedCrop falls back to: the whole image, its ratio clamped to 3/4-4/3."""
    hi, wi = sizes[:, 0].double(), sizes[:, 1].double()
    in_ratio = wi / hi
    h = torch.where(in_ratio < RATIO[0], (wi / RATIO[0]).round(), hi)  # too tall: full width
    w = torch.where(in_ratio > RATIO[1], (hi * RATIO[1]).round(), wi)  # too wide: full height
    return h, w


def center_geometry(sizes: Tensor, resize: int, out: int) -> Tensor:
    """Resize(resize) (shorter side) + CenterCrop(out), torchvision's evaluation transform, as geometry."""
    h, w = sizes[:, 0].double(), sizes[:, 1].double()
    short, long = torch.minimum(h, w), torch.maximum(h, w)
    new_long = (resize * long / short).floor()  # torchvision: int(size * long / short)
    new_h = torch.where(h <= w, torch.full_like(h, resize), new_long)
    new_w = torch.where(h <= w, new_long, torch.full_like(w, resize))
    top, left = ((new_h - out) / 2).round(), ((new_w - out) / 2).round()
    zero = torch.zeros_like(h)
    return torch.stack([torch.stack([zero, h, new_h, top], 1), torch.stack([zero, w, new_w, left], 1)], 1).long()


# --------------------------------------------------------------------------- resampling


def resample(images: Sequence[Tensor], geometry: Tensor, out: int, flips: Tensor | None) -> Tensor:
    """uint8 images (C, H_i, W_i) on one device -> a uint8 (N, C, out, out) batch there: each
    image's geometry (antialiased bilinear resize of a region, then a window), mirrored where
    ``flips`` says. One pair of batched matrix products per chunk on a GPU, SIMD resizes on a CPU."""
    if images[0].device.type == "cpu":
        return _resample_each(images, geometry, out, flips)
    return resample_batched(images, geometry, out, flips)


def _resample_each(images: Sequence[Tensor], geometry: Tensor, out: int, flips: Tensor | None) -> Tensor:
    x = torch.empty((len(images), images[0].shape[0], out, out), dtype=torch.uint8)
    mirror = [False] * len(images) if flips is None else flips.tolist()
    for k, (image, ((y0, h, rh, sy), (x0, w, rw, sx))) in enumerate(zip(images, geometry.tolist())):
        region = image[None, :, y0:y0 + h, x0:x0 + w]
        if (rh, rw) != (h, w):
            region = F.interpolate(region, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)
        window = region[0, :, sy:sy + out, sx:sx + out]
        x[k] = window.flip(-1) if mirror[k] else window  # per image: a whole-batch where() copies twice
    return x


def resample_batched(images: Sequence[Tensor], geometry: Tensor, out: int, flips: Tensor | None) -> Tensor:
    """The GPU form of `resample`: images padded into chunks, rows then columns resampled by
    ``W_rows @ x @ W_cols^T`` with per-image weight matrices (a flip is the column matrix reversed)."""
    device, c = images[0].device, images[0].shape[0]
    result = torch.empty((len(images), c, out, out), dtype=torch.uint8, device=device)
    geometry = geometry.to(device)
    for lo, hi in _chunks([tuple(im.shape[1:]) for im in images], c):
        part = images[lo:hi]
        rows, cols = max(im.shape[1] for im in part), max(im.shape[2] for im in part)
        x = torch.zeros((hi - lo, c, rows, cols), dtype=torch.float32, device=device)
        for k, im in enumerate(part):
            x[k, :, :im.shape[1], :im.shape[2]] = im
        w_rows = resample_weights(geometry[lo:hi, 0], out, rows)
        w_cols = resample_weights(geometry[lo:hi, 1], out, cols)
        if flips is not None:
            w_cols = torch.where(flips[lo:hi].to(device).view(-1, 1, 1), w_cols.flip(1), w_cols)
        y = torch.matmul(torch.matmul(w_rows.unsqueeze(1), x), w_cols.transpose(1, 2).unsqueeze(1))
        result[lo:hi] = y.round_().clamp_(0, 255).to(torch.uint8)
    return result


def _chunks(shapes: list[tuple[int, int]], channels: int) -> Iterator[tuple[int, int]]:
    """Consecutive ranges of images whose padded float copy stays within CHUNK_BYTES."""
    lo, rows, cols = 0, 0, 0
    for i, (h, w) in enumerate(shapes):
        r, c = max(rows, h), max(cols, w)
        if i > lo and (i + 1 - lo) * channels * r * c * 4 > CHUNK_BYTES:
            yield lo, i
            lo, r, c = i, h, w
        rows, cols = r, c
    yield lo, len(shapes)


def resample_weights(axis: Tensor, out: int, full: int) -> Tensor:
    """(n, out, full) weights of PyTorch's antialiased bilinear resize along one axis.

    ``axis`` is (n, 4) geometry: region start, region size, resized size, window start. Output
    pixel k samples the source around ``lo + (start + k + 0.5) * scale`` with a triangle filter
    widened by the downscale factor, restricted to the region and normalised to sum 1, as
    ``F.interpolate(..., antialias=True)`` computes it (tested against it).
    """
    lo, size, resized, start = axis.to(torch.float32).unbind(1)
    scale = size / resized
    support = scale.clamp(min=1.0)
    k = torch.arange(out, dtype=torch.float32, device=axis.device)
    center = lo[:, None] + (start[:, None] + k[None] + 0.5) * scale[:, None]
    j = torch.arange(full, dtype=torch.float32, device=axis.device) + 0.5  # source pixel centres
    w = (1 - (j[None, None] - center[:, :, None]).abs() / support[:, None, None]).clamp_(min=0)
    inside = (j[None] >= lo[:, None]) & (j[None] < (lo + size)[:, None])
    w = w * inside[:, None, :]
    return w / w.sum(-1, keepdim=True).clamp_(min=1e-12)


# --------------------------------------------------------------------------- decoding


def read_encoded(path: str) -> tuple[Tensor, bool]:
    """A file's bytes when it is a JPEG (decoded later, on the GPU), else the image decoded here."""
    from torchvision.io import ImageReadMode, read_file

    data = read_file(path)
    if data.numel() >= 3 and tuple(data[:3].tolist()) == JPEG_MAGIC:
        return data, True
    return _decode_one(path, ImageReadMode.RGB), False


def decode_on(items: Sequence[tuple[Tensor, bool]], device: torch.device) -> list[Tensor]:
    """`read_encoded` results -> RGB uint8 images on ``device``; the JPEGs in one batched call."""
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = [data for data, is_jpeg in items if is_jpeg]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The image decoding", category=DeprecationWarning)
        try:
            decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device) if encoded else []
        except RuntimeError:  # a JPEG nvJPEG cannot read (CMYK, say): this batch on the CPU
            decoded = [im.to(device) for im in decode_jpeg(encoded, mode=ImageReadMode.RGB)]
    it = iter(decoded)
    return [next(it) if is_jpeg else data.to(device) for data, is_jpeg in items]


def decode_files(paths: Sequence[str]) -> list[Tensor]:
    from torchvision.io import ImageReadMode

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The image decoding", category=DeprecationWarning)
        return [_decode_one(p, ImageReadMode.RGB) for p in paths]


# --------------------------------------------------------------------------- the dataset


class _Batches(torch.utils.data.Dataset):
    """Batch b of an epoch, prepared in a DataLoader worker: read (and, for a CPU run, decoded and
    augmented) there; a GPU run decodes and augments in the main process, on the device."""

    def __init__(self, files: Sequence[str], labels: Sequence[int], batches: list[Tensor],
                 draws: list[Tensor] | None, on_gpu: bool, sizes: tuple[int, int]):
        self.files, self.labels, self.batches, self.draws = files, labels, batches, draws
        self.on_gpu, self.sizes = on_gpu, sizes

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> tuple[Any, Tensor | None, Tensor]:
        idx = self.batches[b].tolist()
        draws = None if self.draws is None else self.draws[b]
        labels = torch.tensor([self.labels[i] for i in idx], dtype=torch.int64)
        if self.on_gpu:
            return [read_encoded(self.files[i]) for i in idx], draws, labels
        return augment_batch(decode_files([self.files[i] for i in idx]), draws, *self.sizes), None, labels


def augment_batch(images: Sequence[Tensor], draws: Tensor | None, crop: int, resize: int) -> Tensor:
    """Decoded images -> one uint8 batch: training crops and flips from ``draws``, else the evaluation view."""
    sizes = torch.tensor([tuple(im.shape[1:]) for im in images], dtype=torch.int64)
    if draws is None:
        return resample(images, center_geometry(sizes, resize, crop), crop, None)
    return resample(images, random_resized_geometry(draws, sizes, crop), crop, flips_of(draws))


def _as_is(item: Any) -> Any:
    return item


@DECODERS.register("torchvision")
class JpegStreamingDataset(StreamingDataset):
    """ImageNet-size ImageFolder trees through the batched pipeline above."""

    decoder = "torchvision"

    def train_batches(self, batch_size: int, epoch_seed: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(epoch_seed)
        order = torch.randperm(self.train_size, generator=gen)
        draws = draw_crops(self.train_size, gen)  # by position in the order: a rank's images crop alike
        positions = shard_positions(self.train_size, rank, world)  # padded like DistributedSampler: equal batch counts
        yield from self._batches(self.train.files, self.train.labels, order[positions], draws[positions], batch_size)

    def test_batches(self, batch_size: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        share = torch.arange(*shard_range(self.test_size, rank, world))
        yield from self._batches(self.test.files, self.test.labels, share, None, batch_size)

    def loss_subset(self, n: int, seed: int, pool: int | None = None) -> Batch:
        gen = torch.Generator().manual_seed(seed)
        idx = self._loss_indices(n, gen, pool)
        xs, ys = zip(*self._batches(self.train.files, self.train.labels, idx, draw_crops(n, gen), 256))
        return torch.cat(xs), torch.cat(ys)

    def _batches(self, files: Sequence[str], labels: Sequence[int], order: Tensor, draws: Tensor | None,
                 batch_size: int) -> Iterator[Batch]:
        on_gpu = self.device.type == "cuda"
        jobs = _Batches(files, labels, list(order.split(batch_size)),
                        None if draws is None else list(draws.split(batch_size)), on_gpu,
                        (self.crop_size, self.resize_size))
        loader = torch.utils.data.DataLoader(  # own generator: its base seed would be drawn from the global RNG
            jobs, batch_size=None, shuffle=False, num_workers=self.cfg.loader_workers, collate_fn=_as_is,
            generator=torch.Generator().manual_seed(0))
        for x, draws_b, y in loader:
            if on_gpu:
                x = augment_batch(decode_on(x, self.device), draws_b, self.crop_size, self.resize_size)
            yield self._normalize(x.to(self.device)), y.to(self.device, non_blocking=on_gpu)
