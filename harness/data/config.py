"""What a run asks of its data: `DataConfig`, the `DATASETS` registry and the shapes and
layouts its entries declare (no data is read here, so the CLI can validate before any work)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from harness.errors import UserError
from harness.registry import Registry

Batch = tuple[Tensor, Tensor]
Stats = tuple[tuple[float, ...], tuple[float, ...]]

IMAGENET_STATS: Stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SMALL_SIDE = 64  # ImageFolder images up to this side are held in memory
STATS_SAMPLE = 10_000  # images used to estimate mean/std of an ImageFolder set
FOLDER_LAYOUT = "train/<class>/* + test/ or val/"

DATASETS: Registry[Callable[["DataConfig", torch.device], Any]] = Registry("dataset")
# How ImageNet-size images are decoded and augmented: a streamed Dataset class per --decoder
DECODERS: Registry[type] = Registry("decoder")
DEFAULT_DECODER = "torchvision"  # measured faster than PIL (results/imagenet_input)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    data_root: str | None = None  # folder, or a .zip of an ImageFolder tree
    train_subset: int | None = None  # fixed random subset sizes for quick runs
    test_subset: int | None = None
    subset_seed: int = 0  # the subset is the same for every training seed and pruner
    download: bool = False  # CIFAR only: let torchvision download into data_root
    loader_workers: int = 4  # DataLoader workers (per training process) for streaming (ImageNet-size) datasets
    decoder: str = DEFAULT_DECODER  # streamed data: torchvision (batched JPEG pipeline) or pil (per image)

    @classmethod
    def from_record(cls, saved: dict[str, Any]) -> "DataConfig":
        """The config a record or checkpoint holds. Records written before the rename of
        ``workers`` (now the data-parallel process count of a run) call it ``workers``."""
        values = dict(saved)
        if "workers" in values:
            values.setdefault("loader_workers", values.pop("workers"))
        return cls(**values)

    def train_images(self) -> int | None:
        """Training images a run sees per epoch, known without reading data (the registered
        dataset's ``train_images``, capped by ``train_subset``). For a tree of unknown size
        (imagefolder) the subset is an upper bound, and None without one."""
        known = DATASETS.meta(self.dataset).get("train_images")
        if known is None:
            return self.train_subset
        return known if self.train_subset is None else min(known, self.train_subset)

    def validate(self) -> None:
        """Cheap checks that need no data on disk, so the CLI fails before any work."""
        meta = DATASETS.meta(self.dataset)
        for flag, value in (("train-subset", self.train_subset), ("test-subset", self.test_subset)):
            if value is not None and value < 1:
                raise UserError(
                    f"--{flag} must be at least 1 (got {value}); pass a positive image count or omit it"
                )
        if self.loader_workers < 0:
            raise UserError(f"--loader-workers must be >= 0 (got {self.loader_workers}); pass 0 to load in-process")
        DECODERS.get(self.decoder)  # unknown: the message lists the registered decoders
        if self.download and not meta.get("downloadable"):
            raise UserError(
                f"--download only works for CIFAR; place {self.dataset} under --data-root yourself"
            )
        if not meta.get("needs_root"):
            return
        hint = _root_hint(meta)
        if self.data_root is None and not self.download:
            raise UserError(f"--data-root is required for {self.dataset}: point it at {hint}")
        if self.data_root is not None and not self.download and not Path(self.data_root).exists():
            raise UserError(f"--data-root {self.data_root} does not exist; point it at {hint}")


def dataset_shape(name: str) -> tuple[int, int, int]:
    """(classes, channels, image side) of a registered dataset, known without reading any data."""
    shape = DATASETS.meta(name).get("shape")
    if shape is None:
        raise UserError(f"the shape of {name} depends on the folder; use a named dataset "
                        f"({', '.join(n for n in DATASETS.names() if DATASETS.meta(n).get('shape'))})")
    return shape


def _root_hint(meta: dict[str, Any]) -> str:
    """What a data_root must hold, from the dataset's registry entry, for error messages."""
    return f"{meta['layout']}, or pass --download" if meta.get("downloadable") else meta["layout"]


def _layout_error(name: str, root: Path) -> UserError:
    """A data_root that exists but holds the wrong thing: say what was expected and where to get it."""
    meta = DATASETS.meta(name)
    fetch = f"; get it with {meta['fetch']}" if meta.get("fetch") else ""
    return UserError(f"--data-root {root} is not a {name} folder: expected {meta['layout']}{fetch}")
