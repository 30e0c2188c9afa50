"""The registered datasets (digits, CIFAR-10/100, ImageNet, any ImageFolder tree) and
`load_dataset`. Each entry is a small builder ``(cfg, device) -> Dataset``; a new dataset is
one more ``@DATASETS.register`` function here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.data.augment import channel_stats
from harness.data import jpeg  # noqa: F401  (registers the torchvision decoder)
from harness.data.config import (DATASETS, DECODERS, FOLDER_LAYOUT, IMAGENET_STATS, SMALL_SIDE, DataConfig, Stats,
                                 _layout_error)
from harness.data.datasets import ArraySplit, Dataset, _in_memory, _subsets
from harness.errors import UserError
from harness.data.files import (FileList, FolderSplit, cache_dir, find_imagefolder, probe_image, resolve_root,
                                scan_imagefolder)


def _folder_dataset(cfg: DataConfig, name: str, root: Path, device: torch.device,
                    lists: tuple[FileList, FileList], in_memory_up_to: float = 0,
                    **memory: Any) -> Dataset:
    """An ImageFolder tree as a dataset: in memory when the first training image is at most
    ``in_memory_up_to`` px (decoding only the subset, cached when full), streamed otherwise.

    ``memory`` holds the in-memory settings: num_classes, pad, flip and stats (None: estimate).
    """
    train, test = lists
    channels, side = probe_image(train.files[0])
    if side <= in_memory_up_to:
        splits = (FolderSplit(train, channels, side), FolderSplit(test, channels, side))
        return _in_memory(cfg, name, root, device, splits, **memory)
    train_idx, test_idx = _subsets(cfg, name, len(train.files), len(test.files))
    return DECODERS.get(cfg.decoder)(
        name=name, root=root, cfg=cfg, device=device, num_classes=len(train.classes),
        train=train.subset(train_idx), test=test.subset(test_idx), stats=IMAGENET_STATS,
    )


# --------------------------------------------------------------------------- registered datasets


@DATASETS.register("digits", needs_root=False, shape=(10, 1, 8), train_images=1437)
def digits(cfg: DataConfig, device: torch.device) -> Dataset:
    """scikit-learn's 1,797 8x8 digits, split 80/20 stratified with a fixed seed.

    Crop pad 1 and no flip: a mirrored 2 is not a 2. data_root is ignored.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(np.round(d.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, stratify=d.target, random_state=0)
    splits = (ArraySplit(x[tr], y[tr]), ArraySplit(x[te], y[te]))
    # Stats of the whole training split, so a model normalises the same way whatever subset it saw.
    return _in_memory(cfg, "digits", None, device, splits, num_classes=10, pad=1, flip=False,
                      stats=channel_stats(x[tr]))


@dataclass(frozen=True)
class CifarSpec:
    name: str
    num_classes: int
    tv_folder: str  # what torchvision's CIFAR class unpacks into root
    tv_class: str
    stats: Stats
    fetch: str  # how to get a copy, for layout errors

    def meta(self) -> dict[str, Any]:
        """Registry metadata: what a data_root must hold and how to get one."""
        return dict(
            needs_root=True, downloadable=True, shape=(self.num_classes, 3, 32), train_images=50_000,
            layout=f"a folder containing {self.tv_folder}/ or an ImageFolder tree "
                   f"{FOLDER_LAYOUT} (e.g. train/<class>/*.png), or a .zip of one",
            fetch=self.fetch,
        )


CIFAR10 = CifarSpec("cifar10", 10, "cifar-10-batches-py", "CIFAR10",
                    ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
                    "--download, or python -m zipfile -e cifar10-jpeg.zip DIR for the JPEG copy")
CIFAR100 = CifarSpec("cifar100", 100, "cifar-100-python", "CIFAR100",
                     ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
                     "--download (it fetches cifar-100-python into --data-root)")


def _cifar_pickles(cfg: DataConfig, root: Path, spec: CifarSpec) -> tuple[ArraySplit, ArraySplit]:
    """torchvision's pickled CIFAR (downloaded first with --download) as NCHW uint8 splits."""
    import torchvision.datasets as tvd

    def split(train: bool) -> ArraySplit:
        try:
            ds = getattr(tvd, spec.tv_class)(str(root), train=train, download=cfg.download)
        except (RuntimeError, OSError) as e:
            raise UserError(
                f"could not read {spec.name} from {root / spec.tv_folder} ({e}); "
                "re-download with --download or point --data-root at an ImageFolder copy"
            ) from e
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return ArraySplit(x, torch.tensor(ds.targets, dtype=torch.int64))

    return split(True), split(False)


def _cifar(cfg: DataConfig, device: torch.device, spec: CifarSpec) -> Dataset:
    """An ImageFolder tree when data_root holds one, else torchvision's pickles (or download)."""
    root = resolve_root(cfg) or cache_dir() / "torchvision"
    memory = dict(num_classes=spec.num_classes, pad=4, flip=True, stats=spec.stats)
    if find_imagefolder(root) is not None:
        lists = scan_imagefolder(root, spec.name, spec.num_classes)
        return _folder_dataset(cfg, spec.name, root, device, lists, in_memory_up_to=math.inf, **memory)
    if not ((root / spec.tv_folder).is_dir() or cfg.download):
        raise _layout_error(spec.name, root)
    return _in_memory(cfg, spec.name, root, device, _cifar_pickles(cfg, root, spec), **memory)


@DATASETS.register("cifar10", **CIFAR10.meta())
def cifar10(cfg: DataConfig, device: torch.device) -> Dataset:
    """CIFAR-10: crop pad 4 + flip, the standard CIFAR mean/std."""
    return _cifar(cfg, device, CIFAR10)


@DATASETS.register("cifar100", **CIFAR100.meta())
def cifar100(cfg: DataConfig, device: torch.device) -> Dataset:
    """CIFAR-100: as CIFAR-10 with 100 classes."""
    return _cifar(cfg, device, CIFAR100)


@DATASETS.register(
    "imagenet", needs_root=True, shape=(1000, 3, 224), train_images=1_281_167,  # ILSVRC2012
    layout="an ImageFolder tree train/<class>/*.JPEG + val/<class>/*.JPEG",
    fetch="the ILSVRC2012 train and val archives from image-net.org, val sorted into class folders",
)
def imagenet(cfg: DataConfig, device: torch.device) -> Dataset:
    """ImageNet, always streamed; the class count comes from the tree (1000 for ILSVRC2012)."""
    root = resolve_root(cfg)
    return _folder_dataset(cfg, "imagenet", root, device, scan_imagefolder(root, "imagenet", None))


@DATASETS.register("imagefolder", needs_root=True, layout=f"an ImageFolder tree {FOLDER_LAYOUT}, or a .zip of one")
def imagefolder(cfg: DataConfig, device: torch.device) -> Dataset:
    """Any ImageFolder tree: in memory for <= 64 px images (crop pad side/8, flip, stats
    estimated from the training images), streamed with ImageNet settings otherwise."""
    root = resolve_root(cfg)
    lists = scan_imagefolder(root, "imagefolder", None)
    side = probe_image(lists[0].files[0])[1]
    return _folder_dataset(cfg, "imagefolder", root, device, lists, in_memory_up_to=SMALL_SIDE,
                           num_classes=len(lists[0].classes), pad=max(1, side // 8), flip=True, stats=None)


def load_dataset(cfg: DataConfig, device: torch.device | str = "cpu") -> Dataset:
    """Validate ``cfg`` and build the registered dataset with its tensors on ``device``."""
    cfg.validate()
    return DATASETS.get(cfg.dataset)(cfg, torch.device(device))
