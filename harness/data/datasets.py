"""The two dataset implementations behind one interface.

* `InMemoryDataset` holds small images (digits, CIFAR, ImageFolder trees of <= 64 px images)
  as uint8 tensors on the training device and augments whole batches with tensor ops
  (`harness.data.augment`), so an epoch costs a few kernels per batch and no Python per image.
* `StreamingDataset` reads ImageNet-size ImageFolder trees through a `DataLoader` with the
  standard torchvision transforms, image by image through PIL (``--decoder pil``);
  `harness.data.jpeg` is the batched pipeline beside it (``--decoder torchvision``).

Random draws use CPU generators so CPU and CUDA runs agree.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from harness.data.augment import apply_augment, augment, channel_stats, draw_augment, normalize
from harness.data.config import DECODERS, STATS_SAMPLE, Batch, DataConfig, Stats
from harness.errors import UserError

if TYPE_CHECKING:  # files.py builds on datasets' interface, not the other way round
    from harness.data.files import FileList


class Dataset(ABC):
    """What `load_dataset` returns; the engine only uses this interface."""

    storage = "?"

    def __init__(
        self,
        *,
        name: str,
        root: Path | None,
        cfg: DataConfig,
        device: torch.device,
        num_classes: int,
        in_channels: int,
        image_size: int,
        train_size: int,
        test_size: int,
        stats: Stats,
    ):
        self.name, self.root, self.cfg, self.device = name, root, cfg, device
        self.num_classes, self.in_channels, self.image_size = num_classes, in_channels, image_size
        self.train_size, self.test_size = train_size, test_size
        self.mean, self.std = stats
        self._stats_t = tuple(torch.tensor(v, dtype=torch.float32, device=device) for v in stats)

    @abstractmethod
    def train_batches(self, batch_size: int, epoch_seed: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        """Shuffled, augmented, normalized batches on the device; deterministic per epoch_seed.

        Data-parallel runs (``world`` > 1 processes): ``batch_size`` is the batch of one rank.
        Every rank draws the same seeded permutation of the training set, padded to a multiple
        of ``world`` with its own first indices (as `DistributedSampler` pads), and rank ``r``
        takes its positions ``r, r + world, ...`` (`shard_positions`), so the ranks' k-th
        batches together are positions ``[k B, (k+1) B)`` of the permutation, with ``B =
        batch_size x world``, and every rank has as many batches as the others. An image's
        augmentation depends on its position in the permutation, not on the rank or world.
        """

    @abstractmethod
    def test_batches(self, batch_size: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        """Un-augmented, normalized batches in a fixed order; with ``world`` > 1, rank ``rank``'s
        contiguous share of the test set (`shard_range`: the shares cover it exactly once)."""

    @abstractmethod
    def loss_subset(self, n: int, seed: int, pool: int | None = None) -> Batch:
        """LAASP's fixed subset: n training images, augmented once, normalized, on the device.

        Drawn uniformly (seeded) from the whole training set, or from its first ``pool`` images
        (the LAASP authors' policy: on an ImageFolder tree, whose classes come in sorted order,
        that is the first classes only)."""

    def describe(self) -> dict[str, Any]:
        """JSON-able summary recorded with every run, so results say what data they saw."""
        return {
            "name": self.name,
            "data_root": self.cfg.data_root,
            "root": None if self.root is None else str(self.root),
            "storage": self.storage,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "train_size": self.train_size,
            "test_size": self.test_size,
            "train_subset": self.cfg.train_subset,
            "test_subset": self.cfg.test_subset,
            "subset_seed": self.cfg.subset_seed,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def _normalize(self, x: Tensor) -> Tensor:
        return normalize(x, *self._stats_t)

    def _loss_indices(self, n: int, gen: torch.Generator, pool: int | None = None) -> Tensor:
        size = self.train_size if pool is None else min(pool, self.train_size)
        if not 1 <= n <= size:
            where = "training set" if pool is None else f"first {size} images of the training set"
            raise UserError(
                f"loss subset of {n} images does not fit the {size}-image {where} "
                f"of {self.name}; use a size between 1 and {size} or a larger --train-subset"
            )
        return torch.randperm(size, generator=gen)[:n]


class InMemoryDataset(Dataset):
    """uint8 (N, C, H, W) tensors on the device, augmented per batch by tensor ops."""

    storage = "memory"

    def __init__(self, *, train: Batch, test: Batch, pad: int, flip: bool, **info: Any):
        x, _ = train
        super().__init__(
            in_channels=x.shape[1], image_size=x.shape[2],
            train_size=len(train[0]), test_size=len(test[0]), **info,
        )
        self.train_x, self.train_y = (t.to(self.device) for t in train)
        self.test_x, self.test_y = (t.to(self.device) for t in test)
        self.pad, self.flip = pad, flip

    def train_batches(self, batch_size: int, epoch_seed: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(epoch_seed)
        order = torch.randperm(self.train_size, generator=gen)
        # Every global batch's crops and flips drawn up front, in the order the batches use them (the
        # same draws as batch by batch, and as one process with the global batch), then moved to the
        # device with the order in one copy per epoch.
        draws = [draw_augment(len(idx), self.pad, self.flip, gen) for idx in order.split(batch_size * world)]
        packed = torch.cat([order.view(1, -1), torch.cat(draws, dim=1)])  # (4, N): index, dy, dx, flip
        packed = packed[:, shard_positions(self.train_size, rank, world)]
        for part in packed.to(self.device).split(batch_size, dim=1):
            idx = part[0]
            x = apply_augment(self.train_x[idx], part[1:], self.pad, self.flip)
            yield self._normalize(x), self.train_y[idx]

    def test_batches(self, batch_size: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        share = slice(*shard_range(self.test_size, rank, world))
        for x, y in zip(self.test_x[share].split(batch_size), self.test_y[share].split(batch_size)):
            yield self._normalize(x), y

    def loss_subset(self, n: int, seed: int, pool: int | None = None) -> Batch:
        gen = torch.Generator().manual_seed(seed)
        idx = self._loss_indices(n, gen, pool).to(self.device)
        return self._augmented(idx, gen), self.train_y[idx]

    def _augmented(self, idx: Tensor, gen: torch.Generator) -> Tensor:
        return self._normalize(augment(self.train_x[idx], self.pad, self.flip, gen))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "augment": {"crop_pad": self.pad, "flip": self.flip}}


class _FileImages(torch.utils.data.Dataset):
    """Image files -> (uint8 CHW tensor, label); a per-item seed makes augmentation reproducible.

    Seeding each item from (seed, index) gives the same crops whatever the worker count;
    `fork_rng` keeps the global CPU RNG of the main process untouched when loader_workers == 0, and the
    CUDA generators (dropout on the GPU) are never touched.
    """

    def __init__(self, files: Sequence[str], labels: Sequence[int], transform: Callable, seed: int | None):
        self.files, self.labels, self.transform, self.seed = files, labels, transform, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        from PIL import Image

        with Image.open(self.files[i]) as im:
            img = im.convert("RGB")
        if self.seed is None:
            return self.transform(img), self.labels[i]
        # torchvision's transforms draw from the CPU generator alone: reseed only that one (torch.manual_seed
        # would also reseed every CUDA generator, which fork_rng(devices=[]) does not restore)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed((self.seed * 1_000_003 + i) % 2**63)
            return self.transform(img), self.labels[i]


@DECODERS.register("pil")
class StreamingDataset(Dataset):
    """ImageNet-size ImageFolder trees read through a DataLoader with `loader_workers` processes."""

    storage = "streaming"
    decoder = "pil"
    crop_size, resize_size = 224, 256

    def __init__(self, *, train: "FileList", test: "FileList", **info: Any):
        super().__init__(
            in_channels=3, image_size=self.crop_size,
            train_size=len(train.files), test_size=len(test.files), **info,
        )
        self.train, self.test = train, test

    def _transform(self, training: bool) -> Callable:
        from torchvision import transforms as T

        if training:
            steps = [T.RandomResizedCrop(self.crop_size), T.RandomHorizontalFlip()]
        else:
            steps = [T.Resize(self.resize_size), T.CenterCrop(self.crop_size)]
        return T.Compose([*steps, T.PILToTensor()])  # uint8; normalized on the device

    def _stream(self, images: torch.utils.data.Dataset, batch_size: int) -> Iterator[Batch]:
        on_cuda = self.device.type == "cuda"
        loader = torch.utils.data.DataLoader(  # own generator: leave the global RNG alone
            images, batch_size=batch_size, shuffle=False, num_workers=self.cfg.loader_workers,
            pin_memory=on_cuda, generator=torch.Generator().manual_seed(0),
        )
        for x, y in loader:
            x, y = x.to(self.device, non_blocking=on_cuda), y.to(self.device, non_blocking=on_cuda)
            yield self._normalize(x), y

    def _train_images(self, order: Tensor, seed: int) -> torch.utils.data.Dataset:
        images = _FileImages(self.train.files, self.train.labels, self._transform(True), seed)
        return torch.utils.data.Subset(images, order.tolist())

    def train_batches(self, batch_size: int, epoch_seed: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        order = torch.randperm(self.train_size, generator=torch.Generator().manual_seed(epoch_seed))
        order = order[shard_positions(self.train_size, rank, world)]  # DistributedSampler's shard
        yield from self._stream(self._train_images(order, epoch_seed), batch_size)

    def test_batches(self, batch_size: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        images = _FileImages(self.test.files, self.test.labels, self._transform(False), None)
        if world > 1:
            images = torch.utils.data.Subset(images, range(*shard_range(self.test_size, rank, world)))
        yield from self._stream(images, batch_size)

    def loss_subset(self, n: int, seed: int, pool: int | None = None) -> Batch:
        idx = self._loss_indices(n, torch.Generator().manual_seed(seed), pool)
        xs, ys = zip(*self._stream(self._train_images(idx, seed), 256))
        return torch.cat(xs), torch.cat(ys)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "decoder": self.decoder}


def shard_positions(total: int, rank: int, world: int) -> Tensor:
    """Rank ``rank``'s positions in an epoch's permutation of ``total`` items: ``rank, rank +
    world, ...`` after padding the permutation to a multiple of ``world`` with its first
    positions (`DistributedSampler`'s rule), so every rank gets ``ceil(total / world)`` items
    and as many batches. One process gets every position, unpadded."""
    if not 0 <= rank < world:
        raise UserError(f"rank {rank} is not in [0, world {world}); pass 0 <= rank < world")
    if world == 1:
        return torch.arange(total)
    padded = -(-total // world) * world
    return (torch.arange(rank, padded, world) % total) if total else torch.arange(0)


def shard_range(total: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous share of ``total`` items (evaluation)."""
    return total * rank // world, total * (rank + 1) // world


def subset_indices(total: int, k: int | None, seed: int, flag: str, what: str) -> Tensor | None:
    """A fixed random subset of ``k`` of ``total`` indices (sorted), or None for all.

    Depends only on (total, k, seed), so every training seed and pruner sees the same images.
    """
    if k is None:
        return None
    if k > total:
        raise UserError(
            f"--{flag}={k} is larger than the {what} ({total} images); pass at most {total} or omit it"
        )
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:k].sort().values


def _subsets(cfg: DataConfig, name: str, train_size: int, test_size: int) -> tuple[Tensor | None, Tensor | None]:
    """The configured train and test subsets of a dataset's two splits."""
    return (
        subset_indices(train_size, cfg.train_subset, cfg.subset_seed, "train-subset", f"training set of {name}"),
        subset_indices(test_size, cfg.test_subset, cfg.subset_seed, "test-subset", f"test set of {name}"),
    )


class ArraySplit:
    """A split already decoded in memory (digits, torchvision's CIFAR pickles)."""

    def __init__(self, x: Tensor, y: Tensor):
        self.x, self.y = x, y
        self.size = len(y)

    def load(self, idx: Tensor | None) -> Batch:
        return (self.x, self.y) if idx is None else (self.x[idx], self.y[idx])


def _in_memory(cfg: DataConfig, name: str, root: Path | None, device: torch.device,
               splits: tuple[Any, Any], num_classes: int, pad: int, flip: bool,
               stats: Stats | None = None) -> InMemoryDataset:
    """Apply the configured subsets to two splits, load them and wrap them as a dataset.

    ``stats=None`` estimates mean/std from (a sample of) the loaded training images.
    """
    train_split, test_split = splits
    train_idx, test_idx = _subsets(cfg, name, train_split.size, test_split.size)
    train, test = train_split.load(train_idx), test_split.load(test_idx)
    stats = stats or channel_stats(train[0][:STATS_SAMPLE])
    return InMemoryDataset(
        name=name, root=root, cfg=cfg, device=device, num_classes=num_classes,
        train=train, test=test, pad=pad, flip=flip, stats=stats,
    )
