"""Datasets for the benchmark: one interface, two implementations.

* `InMemoryDataset` holds small images (digits, CIFAR, ImageFolder trees of <= 64 px images)
  as uint8 tensors on the training device and augments whole batches with tensor ops
  (`harness.augment`), so an epoch costs a few kernels per batch and no Python per image.
* `StreamingDataset` reads ImageNet-size ImageFolder trees through a `DataLoader` with the
  standard torchvision transforms.

Datasets are looked up by name in `DATASETS`; each entry is a small builder
``(cfg, device) -> Dataset``. Random draws use CPU generators so CPU and CUDA runs agree.
"""
from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import warnings
import zipfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from harness.augment import augment, channel_stats, normalize
from harness.errors import UserError
from harness.registry import Registry

Batch = tuple[Tensor, Tensor]
Stats = tuple[tuple[float, ...], tuple[float, ...]]

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGENET_STATS: Stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SMALL_SIDE = 64  # ImageFolder images up to this side are held in memory
STATS_SAMPLE = 10_000  # images used to estimate mean/std of an ImageFolder set
FOLDER_LAYOUT = "train/<class>/* + test/ or val/"

DATASETS: Registry[Callable[["DataConfig", torch.device], "Dataset"]] = Registry("dataset")


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    data_root: str | None = None  # folder, or a .zip of an ImageFolder tree
    train_subset: int | None = None  # fixed random subset sizes for quick runs
    test_subset: int | None = None
    subset_seed: int = 0  # the subset is the same for every training seed and pruner
    download: bool = False  # CIFAR only: let torchvision download into data_root
    workers: int = 4  # DataLoader workers for streaming (ImageNet-size) datasets

    def validate(self) -> None:
        """Cheap checks that need no data on disk, so the CLI fails before any work."""
        meta = DATASETS.meta(self.dataset)
        for flag, value in (("train-subset", self.train_subset), ("test-subset", self.test_subset)):
            if value is not None and value < 1:
                raise UserError(
                    f"--{flag} must be at least 1 (got {value}); pass a positive image count or omit it"
                )
        if self.workers < 0:
            raise UserError(f"--workers must be >= 0 (got {self.workers}); pass 0 to load in-process")
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


# --------------------------------------------------------------------------- datasets


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
    def train_batches(self, batch_size: int, epoch_seed: int) -> Iterator[Batch]:
        """Shuffled, augmented, normalized batches on the device; deterministic per epoch_seed."""

    @abstractmethod
    def test_batches(self, batch_size: int) -> Iterator[Batch]:
        """Un-augmented, normalized batches in a fixed order."""

    @abstractmethod
    def loss_subset(self, n: int, seed: int) -> Batch:
        """LAASP's fixed subset: n training images, augmented once, normalized, on the device."""

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

    def _loss_indices(self, n: int, gen: torch.Generator) -> Tensor:
        if not 1 <= n <= self.train_size:
            raise UserError(
                f"loss subset of {n} images does not fit the {self.train_size}-image training set "
                f"of {self.name}; use a size between 1 and {self.train_size} or a larger --train-subset"
            )
        return torch.randperm(self.train_size, generator=gen)[:n]


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

    def train_batches(self, batch_size: int, epoch_seed: int) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(epoch_seed)
        order = torch.randperm(self.train_size, generator=gen).to(self.device)
        for idx in order.split(batch_size):
            yield self._augmented(idx, gen), self.train_y[idx]

    def test_batches(self, batch_size: int) -> Iterator[Batch]:
        for x, y in zip(self.test_x.split(batch_size), self.test_y.split(batch_size)):
            yield self._normalize(x), y

    def loss_subset(self, n: int, seed: int) -> Batch:
        gen = torch.Generator().manual_seed(seed)
        idx = self._loss_indices(n, gen).to(self.device)
        return self._augmented(idx, gen), self.train_y[idx]

    def _augmented(self, idx: Tensor, gen: torch.Generator) -> Tensor:
        return self._normalize(augment(self.train_x[idx], self.pad, self.flip, gen))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "augment": {"crop_pad": self.pad, "flip": self.flip}}


class _FileImages(torch.utils.data.Dataset):
    """Image files -> (uint8 CHW tensor, label); a per-item seed makes augmentation reproducible.

    Seeding each item from (seed, index) gives the same crops whatever the worker count;
    `fork_rng` keeps the global RNG of the main process untouched when workers == 0.
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
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + i) % 2**63)
            return self.transform(img), self.labels[i]


class StreamingDataset(Dataset):
    """ImageNet-size ImageFolder trees read through a DataLoader with `workers` processes."""

    storage = "streaming"
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
            images, batch_size=batch_size, shuffle=False, num_workers=self.cfg.workers,
            pin_memory=on_cuda, generator=torch.Generator().manual_seed(0),
        )
        for x, y in loader:
            x, y = x.to(self.device, non_blocking=on_cuda), y.to(self.device, non_blocking=on_cuda)
            yield self._normalize(x), y

    def _train_images(self, order: Tensor, seed: int) -> torch.utils.data.Dataset:
        images = _FileImages(self.train.files, self.train.labels, self._transform(True), seed)
        return torch.utils.data.Subset(images, order.tolist())

    def train_batches(self, batch_size: int, epoch_seed: int) -> Iterator[Batch]:
        order = torch.randperm(self.train_size, generator=torch.Generator().manual_seed(epoch_seed))
        yield from self._stream(self._train_images(order, epoch_seed), batch_size)

    def test_batches(self, batch_size: int) -> Iterator[Batch]:
        images = _FileImages(self.test.files, self.test.labels, self._transform(False), None)
        yield from self._stream(images, batch_size)

    def loss_subset(self, n: int, seed: int) -> Batch:
        idx = self._loss_indices(n, torch.Generator().manual_seed(seed))
        xs, ys = zip(*self._stream(self._train_images(idx, seed), 256))
        return torch.cat(xs), torch.cat(ys)


def load_dataset(cfg: DataConfig, device: torch.device | str = "cpu") -> Dataset:
    """Validate ``cfg`` and build the registered dataset with its tensors on ``device``."""
    cfg.validate()
    return DATASETS.get(cfg.dataset)(cfg, torch.device(device))


# --------------------------------------------------------------------------- subsets


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


# --------------------------------------------------------------------------- folders and cache


def cache_dir() -> Path:
    """Where extracted zips and decoded splits live (``LAASP_CACHE``, default <repo>/.cache)."""
    return Path(os.environ.get("LAASP_CACHE") or REPO_ROOT / ".cache")


def _digest(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


def extract_zip(zip_path: Path, cache: Path | None = None) -> Path:
    """Extract a zip once into the cache and return the folder.

    Extraction goes to a private tmp dir that is renamed into place, so parallel sweep
    trials never see a half-written tree; a process that loses the race uses the winner's.
    """
    st = zip_path.stat()
    base = (cache or cache_dir()) / "extracted"
    target = base / f"{zip_path.stem}-{_digest(zip_path.resolve(), st.st_size, st.st_mtime_ns)}"
    if target.is_dir():
        return target
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=base))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)
        os.rename(tmp, target)
    except zipfile.BadZipFile as e:
        raise UserError(f"--data-root {zip_path} is not a readable zip ({e}); re-copy the file") from e
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_root(cfg: DataConfig) -> Path | None:
    """The data folder to read: data_root itself, or its extraction when it is a .zip."""
    if cfg.data_root is None:
        return None
    root = Path(cfg.data_root).expanduser().resolve()
    return extract_zip(root) if root.is_file() and zipfile.is_zipfile(root) else root


def find_imagefolder(root: Path) -> tuple[Path, Path] | None:
    """``(train, test)`` split dirs of an ImageFolder tree at root or in its only subfolder.

    The subfolder case covers zips that wrap the tree in one top folder (cifar10/train/...).
    """
    if not root.is_dir():
        return None
    subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "__"))]
    for cand in [root] + (subdirs if len(subdirs) == 1 else []):
        test = next((cand / s for s in ("test", "val") if (cand / s).is_dir()), None)
        if (cand / "train").is_dir() and test is not None:
            return cand / "train", test
    return None


@dataclass
class FileList:
    """The image files of one ImageFolder split, in ImageFolder's order (class, then name)."""

    root: Path
    classes: list[str]
    files: list[str]
    labels: list[int]

    def subset(self, idx: Tensor | None) -> "FileList":
        if idx is None:
            return self
        keep = idx.tolist()
        return FileList(self.root, self.classes, [self.files[i] for i in keep], [self.labels[i] for i in keep])

    def stamp(self) -> str:
        """Cache key part that changes when files are added, removed or replaced."""
        dirs = [self.root] + [self.root / c for c in self.classes]
        mtime = max(os.stat(d).st_mtime_ns for d in dirs)
        return _digest(self.root.resolve(), len(self.files), mtime)


def scan_split(split_dir: Path, classes: list[str] | None = None) -> FileList:
    """List ``split_dir/<class>/*`` images; ``classes`` pins the label order to train's."""
    found = sorted(d.name for d in os.scandir(split_dir) if d.is_dir() and not d.name.startswith("."))
    if classes is not None and found != classes:
        raise UserError(
            f"{split_dir} has classes {_preview(found)} but train/ has {_preview(classes)}; "
            "make both splits hold the same class folders"
        )
    files, labels = [], []
    for label, cls in enumerate(found):
        names = sorted(e.name for e in os.scandir(split_dir / cls)
                       if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS))
        files += [str(split_dir / cls / n) for n in names]
        labels += [label] * len(names)
    if not files:
        raise UserError(f"no images found under {split_dir}/<class>/; expected {FOLDER_LAYOUT}")
    return FileList(split_dir, found, files, labels)


def _preview(names: list[str], k: int = 5) -> str:
    return f"{len(names)} ({', '.join(names[:k])}{', ...' if len(names) > k else ''})"


def scan_imagefolder(root: Path, name: str, num_classes: int | None) -> tuple[FileList, FileList]:
    """Train and test file lists of the tree under ``root``; checks layout and class count."""
    dirs = find_imagefolder(root)
    if dirs is None:
        raise _layout_error(name, root)
    train = scan_split(dirs[0])
    test = scan_split(dirs[1], train.classes)
    if num_classes is not None and len(train.classes) != num_classes:
        raise UserError(
            f"{dirs[0]} has {_preview(train.classes)} classes but {name} has {num_classes}; "
            f"point --data-root at a {name} tree or use --dataset imagefolder"
        )
    return train, test


def probe_image(path: str) -> tuple[int, int]:
    """(channels, side) of an image from its header only: 1 for grayscale, else 3 (RGB)."""
    from PIL import Image

    with Image.open(path) as im:
        return (1 if len(im.getbands()) == 1 else 3), max(im.size)


def decode_images(files: Sequence[str], channels: int, side: int) -> Tensor:
    """Decode image files into one uint8 (N, C, side, side) tensor (resizing odd sizes).

    torchvision.io decodes CIFAR's JPEGs about 3x faster than PIL, fast enough that a
    process pool would not pay for itself on two cores; PIL covers the formats it lacks
    (bmp, tiff, ppm). Its 0.29 deprecation notice would fire once per image, so it is muted.
    """
    from torchvision.io import ImageReadMode

    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    out = torch.empty((len(files), channels, side, side), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The image decoding", category=DeprecationWarning)
        for i, f in enumerate(files):
            img = _decode_one(f, mode)
            out[i] = img if img.shape[1:] == (side, side) else _resize(img, side)
    return out


def _decode_one(path: str, mode: Any) -> Tensor:
    """One image as uint8 (C, H, W): torchvision.io first, PIL for what it cannot read."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        return decode_image(read_file(path), mode=mode)
    except RuntimeError:
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im.convert("L" if mode == ImageReadMode.GRAY else "RGB"))
        return torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1).copy()).permute(2, 0, 1)


def _resize(img: Tensor, side: int) -> Tensor:
    """Squash an odd-sized image to side x side (imported lazily: transforms load slowly)."""
    from torchvision.transforms.v2.functional import resize

    return resize(img, [side, side], antialias=True)


class FolderSplit:
    """An ImageFolder split decoded on demand; full decodes are cached as .npy files.

    Sweep trials running in parallel read the same data, so the cache is written to a tmp
    file and renamed into place (labels first: the image file marks a complete entry).
    """

    def __init__(self, files: FileList, channels: int, side: int):
        self.files, self.channels, self.side = files, channels, side
        self.size = len(files.files)

    def _cache_paths(self) -> tuple[Path, Path]:
        key = f"{self.files.root.name}-{self.files.stamp()}-{self.channels}x{self.side}"
        base = cache_dir() / "decoded"
        return base / f"{key}.x.npy", base / f"{key}.y.npy"

    def load(self, idx: Tensor | None) -> Batch:
        x_path, y_path = self._cache_paths()
        if x_path.exists():  # memory-mapped, so a subset reads only its own images
            sel = slice(None) if idx is None else idx.numpy()
            x, y = np.load(x_path, mmap_mode="r")[sel], np.load(y_path)[sel]
            return torch.from_numpy(np.array(x)), torch.from_numpy(y)
        part = self.files.subset(idx)
        x = decode_images(part.files, self.channels, self.side)
        y = torch.tensor(part.labels, dtype=torch.int64)
        if idx is None:
            _save_atomic(y_path, y.numpy())
            _save_atomic(x_path, x.numpy())
        return x, y


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    return StreamingDataset(
        name=name, root=root, cfg=cfg, device=device, num_classes=len(train.classes),
        train=train.subset(train_idx), test=test.subset(test_idx), stats=IMAGENET_STATS,
    )


# --------------------------------------------------------------------------- registered datasets


@DATASETS.register("digits", needs_root=False, shape=(10, 1, 8))
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
            needs_root=True, downloadable=True, shape=(self.num_classes, 3, 32),
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
    "imagenet", needs_root=True, shape=(1000, 3, 224),
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
