"""Data on disk: the cache folder, zip extraction, ImageFolder scanning and image decoding
(cached as .npy so a split is decoded once)."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from harness.data.config import FOLDER_LAYOUT, IMG_EXTENSIONS, Batch, DataConfig, _layout_error
from harness.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]


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
