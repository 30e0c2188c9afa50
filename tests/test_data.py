"""Tests for harness.data and harness.data.augment: splits, determinism, augmentation, errors."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from harness.data import config as data_config, files as data_files, sources as data_sources
from harness.data.augment import augment, channel_stats, crop, hflip, normalize
from harness.data import DataConfig, Dataset, extract_zip, load_dataset, subset_indices
from harness.errors import UserError

CIFAR_MEAN = (0.49, 0.48, 0.45)  # measured on the JPEG copy: 0.4913 0.4821 0.4465


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset(DataConfig("digits"))


def to_uint8(x: Tensor, ds: Dataset) -> Tensor:
    """Undo `normalize` exactly (the float error is far below half a grey level)."""
    mean = torch.tensor(ds.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.std).view(1, -1, 1, 1)
    return ((x.cpu() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)


def shifted(x: Tensor, pad: int) -> Tensor:
    """All (2*pad+1)^2 zero-filled shifts of x by at most pad, by plain slicing: (S, N, C, H, W)."""
    h, w = x.shape[-2:]
    p = F.pad(x, (pad, pad, pad, pad))
    k = 2 * pad + 1
    return torch.stack([p[..., i:i + h, j:j + w] for i in range(k) for j in range(k)])


def match_any(batch: Tensor, labels: Tensor, cands: Tensor, cand_labels: Tensor) -> Tensor:
    """For each batch image: does some candidate image with the same label equal it exactly?"""
    b = batch.flatten(1).to(torch.int16)
    c = cands.flatten(1).to(torch.int16)
    same = (b[:, None, :] == c[None, :, :]).all(-1) & (labels[:, None] == cand_labels[None, :])
    return same.any(1)


def assert_shifts_of_train(x: Tensor, y: Tensor, ds: Dataset, pad: int) -> None:
    """Every image is an un-flipped shift (by <= pad) of a training image of the same label."""
    cands = shifted(ds.train_x, pad)  # (S, N, C, H, W)
    cand_labels = ds.train_y.repeat(cands.shape[0])
    assert match_any(to_uint8(x, ds), y, cands.flatten(0, 1), cand_labels).all()


def write_tree(root: Path, classes: Sequence[str], per_split: dict[str, int], side: int,
               mode: str = "RGB") -> Path:
    """A tiny ImageFolder tree of PNGs; each class has its own colour so labels are checkable."""
    from PIL import Image

    palette = [(220, 20, 20), (20, 20, 220), (20, 200, 20), (200, 200, 20)]
    for split, n in per_split.items():
        for c, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                colour = tuple(min(255, v + 3 * i) for v in palette[c % len(palette)])
                Image.new("RGB", (side, side), colour).convert(mode).save(root / split / cls / f"{i:04d}.png")
    return root


def error_text(cfg: DataConfig) -> str:
    with pytest.raises(UserError) as info:
        load_dataset(cfg)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- augment ops


def test_crop_exact_offsets() -> None:
    x = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)
    # window at (dy=0, dx=2) of the 1-padded image: content moves down 1 and left 1
    out = crop(x, torch.tensor([0]), torch.tensor([2]), pad=1)
    expected = torch.tensor([[0, 0, 0, 0],
                             [2, 3, 4, 0],
                             [6, 7, 8, 0],
                             [10, 11, 12, 0]], dtype=torch.uint8)
    assert torch.equal(out[0, 0], expected)
    assert torch.equal(crop(x, torch.tensor([1]), torch.tensor([1]), pad=1), x)  # centre = identity
    two = torch.cat([x, x + 16])
    out2 = crop(two, torch.tensor([2, 1]), torch.tensor([1, 0]), pad=1)
    assert torch.equal(out2[0, 0, :3], x[0, 0, 1:])  # moved up one row
    assert torch.equal(out2[0, 0, 3], torch.zeros(4, dtype=torch.uint8))
    assert torch.equal(out2[1, 0, :, 1:], (x + 16)[0, 0, :, :3])  # moved right one column
    assert torch.equal(out2[1, 0, :, 0], torch.zeros(4, dtype=torch.uint8))


def test_hflip_exact() -> None:
    x = torch.tensor([[[[1, 2, 3]]], [[[4, 5, 6]]]], dtype=torch.uint8)
    out = hflip(x, torch.tensor([True, False]))
    assert out.tolist() == [[[[3, 2, 1]]], [[[4, 5, 6]]]]


def test_normalize_and_stats() -> None:
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
    assert normalize(x, (0.5,), (0.5,)).flatten().tolist() == [-1.0, 1.0]
    mean, std = channel_stats(x, chunk=1)
    assert mean == pytest.approx((0.5,)) and std == pytest.approx((0.5,))


def test_augment_shifts_and_flips_within_pad() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 8, 8), generator=gen, dtype=torch.uint8)
    out = augment(x, pad=2, flip=True, gen=torch.Generator().manual_seed(1))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    plain, mirrored = shifted(x, 2), shifted(x.flip(3), 2)  # (25, N, C, H, W)
    is_plain = (plain == out).flatten(2).all(-1).any(0)
    is_mirrored = (mirrored == out).flatten(2).all(-1).any(0)
    assert (is_plain | is_mirrored).all()  # never moved by more than pad
    assert is_plain.any() and is_mirrored.any()  # both flip outcomes occur
    assert not (plain[12] == out).flatten(1).all(-1).all()  # not all identity


# --------------------------------------------------------------------------- digits


def test_digits_shape_and_split(digits: Dataset) -> None:
    assert (digits.num_classes, digits.in_channels, digits.image_size) == (10, 1, 8)
    assert (digits.train_size, digits.test_size) == (1437, 360)
    assert digits.train_x.dtype == torch.uint8 and int(digits.train_x.max()) == 255
    overall = torch.bincount(torch.cat([digits.train_y, digits.test_y]), minlength=10)
    test = torch.bincount(digits.test_y, minlength=10)
    assert ((test - 0.2 * overall).abs() <= 1).all()  # stratified
    again = load_dataset(DataConfig("digits"))
    assert torch.equal(again.train_x, digits.train_x) and torch.equal(again.test_y, digits.test_y)
    d = digits.describe()
    assert d["mean"] == pytest.approx(list(channel_stats(digits.train_x)[0]))
    assert not d["augment"]["flip"] and d["augment"]["crop_pad"] == 1


def test_train_batches_deterministic(digits: Dataset) -> None:
    a = list(digits.train_batches(500, epoch_seed=3))
    b = list(digits.train_batches(500, epoch_seed=3))
    c = list(digits.train_batches(500, epoch_seed=4))
    assert [len(y) for _, y in a] == [500, 500, 437]  # last partial batch kept
    assert a[0][0].dtype == torch.float32 and a[0][1].dtype == torch.int64
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    assert sorted(torch.cat([y for _, y in a]).tolist()) == sorted(digits.train_y.tolist())


def test_epoch_draws_made_up_front_equal_batch_by_batch_draws() -> None:
    """One host-to-device copy per epoch instead of three per batch, and the very same crops and flips."""
    from harness.data.datasets import InMemoryDataset

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (150, 3, 8, 8), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (150,), generator=gen)
    ds = InMemoryDataset(train=(x, y), test=(x[:4], y[:4]), pad=2, flip=True, name="t", root=None,
                         cfg=DataConfig("digits"), device=torch.device("cpu"), num_classes=10,
                         stats=((0.5,) * 3, (0.25,) * 3))
    batch_gen = torch.Generator().manual_seed(9)  # the order of draws before: permutation, then per batch
    order = torch.randperm(150, generator=batch_gen)
    expected = [(normalize(augment(x[idx], 2, True, batch_gen), (0.5,) * 3, (0.25,) * 3), y[idx])
                for idx in order.split(64)]
    got = list(ds.train_batches(64, epoch_seed=9))
    assert [len(b) for _, b in got] == [64, 64, 22]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, expected))


def test_streamed_items_reseed_only_the_cpu_generator(tmp_path: Path, monkeypatch) -> None:
    """torch.manual_seed would reseed every CUDA generator too, which fork_rng(devices=[]) never restores."""
    from PIL import Image

    from harness.data.datasets import _FileImages

    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "a.png")
    cuda_seeds = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: cuda_seeds.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: cuda_seeds.append(seed))
    rng = torch.get_rng_state()
    images = _FileImages([str(tmp_path / "a.png")], [0], lambda img: torch.rand(2), seed=3)
    first, again = images[0][0], images[0][0]
    assert torch.equal(first, again) and cuda_seeds == [] and torch.equal(rng, torch.get_rng_state())


def test_train_batches_are_unflipped_shifts(digits: Dataset) -> None:
    x, y = next(digits.train_batches(64, epoch_seed=0))
    assert_shifts_of_train(x, y, digits, pad=1)
    assert not match_any(to_uint8(x, digits), y, digits.train_x, digits.train_y).all()  # augmented


def test_test_batches_fixed_and_plain(digits: Dataset) -> None:
    xs, ys = zip(*digits.test_batches(100))
    assert [len(y) for y in ys] == [100, 100, 100, 60]
    assert torch.equal(to_uint8(torch.cat(xs), digits), digits.test_x)
    assert torch.equal(torch.cat(ys), digits.test_y)


def test_loss_subset_fixed(digits: Dataset) -> None:
    x, y = digits.loss_subset(100, seed=7)
    x2, y2 = digits.loss_subset(100, seed=7)
    assert x.shape == (100, 1, 8, 8) and torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, digits.loss_subset(100, seed=8)[0])
    assert_shifts_of_train(x, y, digits, pad=1)
    with pytest.raises(UserError, match="does not fit"):
        digits.loss_subset(1438, seed=0)


def test_loss_subset_from_the_first_images_only(digits: Dataset) -> None:
    """The LAASP authors' policy: draw from the first ``pool`` training images (their ImageNet subset
    is 5,000 of the first 149,999 ImageFolder images, so only the first classes)."""
    x, y = digits.loss_subset(50, seed=7, pool=100)
    first = shifted(digits.train_x[:100], 1)
    assert match_any(to_uint8(x, digits), y, first.flatten(0, 1), digits.train_y[:100].repeat(first.shape[0])).all()
    assert torch.equal(x, digits.loss_subset(50, seed=7, pool=100)[0])
    with pytest.raises(UserError, match="first 100 images"):
        digits.loss_subset(101, seed=0, pool=100)


def test_subsets_fixed() -> None:
    idx = subset_indices(1000, 50, seed=0, flag="train-subset", what="x")
    assert torch.equal(idx, subset_indices(1000, 50, 0, "train-subset", "x"))
    assert len(set(idx.tolist())) == 50 and torch.equal(idx, idx.sort().values)
    ds = load_dataset(DataConfig("digits", train_subset=100, test_subset=50, subset_seed=1))
    assert (ds.train_size, ds.test_size) == (100, 50)
    assert ds.describe()["train_subset"] == 100 and ds.describe()["subset_seed"] == 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(digits: Dataset) -> None:
    gpu = load_dataset(DataConfig("digits"), device="cuda")
    (xc, yc), (xg, yg) = next(digits.train_batches(256, 5)), next(gpu.train_batches(256, 5))
    assert xg.is_cuda and yg.is_cuda
    assert torch.allclose(xc, xg.cpu()) and torch.equal(yc, yg.cpu())


# --------------------------------------------------------------------------- ImageFolder trees


def test_small_imagefolder_in_memory_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAASP_CACHE", str(tmp_path / "cache"))
    root = write_tree(tmp_path / "tree", ["a", "b"], {"train": 4, "val": 2}, side=16, mode="L")
    cfg = DataConfig("imagefolder", str(root))
    ds = load_dataset(cfg)
    assert (ds.storage, ds.in_channels, ds.image_size, ds.num_classes) == ("memory", 1, 16, 2)
    assert ds.test_y.tolist() == [0, 0, 1, 1] and ds.describe()["augment"]["crop_pad"] == 2
    assert ds.mean == pytest.approx(channel_stats(ds.train_x)[0])

    def no_decode(*args: object) -> None:
        raise AssertionError("full splits should come from the .npy cache")

    monkeypatch.setattr(data_files, "decode_images", no_decode)
    again = load_dataset(cfg)
    assert torch.equal(again.train_x, ds.train_x) and torch.equal(again.test_y, ds.test_y)


def test_zip_extracted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAASP_CACHE", str(tmp_path / "cache"))
    write_tree(tmp_path / "src" / "tiny", ["a", "b"], {"train": 2, "test": 1}, side=8)
    zip_path = Path(shutil.make_archive(str(tmp_path / "tiny"), "zip", tmp_path / "src"))
    ds = load_dataset(DataConfig("imagefolder", str(zip_path)))
    assert (ds.train_size, ds.test_size, ds.in_channels) == (4, 2, 3)
    assert extract_zip(zip_path) == ds.root and ds.describe()["data_root"] == str(zip_path)
    assert len(list((tmp_path / "cache" / "extracted").iterdir())) == 1  # no tmp dirs left


def test_streaming_imagefolder(tmp_path: Path) -> None:
    root = write_tree(tmp_path, ["a", "b"], {"train": 3, "test": 2}, side=80)
    ds = load_dataset(DataConfig("imagefolder", str(root), loader_workers=0))
    assert (ds.storage, ds.image_size, ds.in_channels, ds.train_size) == ("streaming", 224, 3, 6)
    assert ds.describe()["mean"] == list(data_config.IMAGENET_STATS[0])
    xs, ys = zip(*ds.test_batches(3))
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (4, 3, 224, 224) and y.tolist() == [0, 0, 1, 1]
    red, blue = to_uint8(x, ds)[:, 0].float().mean((1, 2)), to_uint8(x, ds)[:, 2].float().mean((1, 2))
    assert ((red > blue) == (y == 0)).all()  # labels travel with their images
    rng = torch.get_rng_state()
    a, b = list(ds.train_batches(4, epoch_seed=1)), list(ds.train_batches(4, epoch_seed=1))
    assert torch.equal(rng, torch.get_rng_state())  # per-item seeding leaves the global RNG alone
    assert [len(y) for _, y in a] == [4, 2] and a[0][0].shape[1:] == (3, 224, 224)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    lx, ly = ds.loss_subset(3, seed=2)
    assert lx.shape == (3, 3, 224, 224) and torch.equal(lx, ds.loss_subset(3, seed=2)[0])


# --------------------------------------------------------------------------- errors


def test_config_errors(tmp_path: Path) -> None:
    cases = [
        (DataConfig("nope"), "unknown dataset 'nope'"),
        (DataConfig(train_subset=0), "--train-subset must be at least 1"),
        (DataConfig(test_subset=-3), "--test-subset must be at least 1"),
        (DataConfig("digits", download=True), "--download only works for CIFAR"),
        (DataConfig("cifar10"), "--data-root is required for cifar10"),
        (DataConfig("imagenet"), "--data-root is required for imagenet"),
        (DataConfig("cifar10", str(tmp_path / "missing")), "does not exist"),
    ]
    for cfg, words in cases:
        assert words in error_text(cfg), cfg
    assert "cifar-10-batches-py" in error_text(DataConfig("cifar10")) and "--download" in error_text(DataConfig("cifar10"))


def test_layout_and_class_errors(tmp_path: Path) -> None:
    msg = error_text(DataConfig("cifar10", str(tmp_path)))
    assert "not a cifar10 folder" in msg and "cifar-10-batches-py/" in msg and "train/<class>/*" in msg
    assert "--download" in msg and "python -m zipfile -e cifar10-jpeg.zip" in msg
    write_tree(tmp_path / "seven", [f"c{i}" for i in range(7)], {"train": 1, "test": 1}, side=4)
    assert "has 7 (" in error_text(DataConfig("cifar10", str(tmp_path / "seven")))
    write_tree(tmp_path / "odd", ["a", "b"], {"train": 1}, side=4)
    write_tree(tmp_path / "odd", ["a", "c"], {"val": 1}, side=4)
    assert "same class folders" in error_text(DataConfig("imagefolder", str(tmp_path / "odd")))


def test_subset_errors() -> None:
    msg = error_text(DataConfig("digits", train_subset=5000))
    assert "--train-subset=5000 is larger than the training set of digits (1437 images)" in msg
    assert "--test-subset=361" in error_text(DataConfig("digits", test_subset=361))


# --------------------------------------------------------------------------- real CIFAR-10


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap decode_images so a test can see how many images were actually decoded."""
    counts: list[int] = []
    real = data_files.decode_images

    def counting(files: Sequence[str], channels: int, side: int) -> Tensor:
        counts.append(len(files))
        return real(files, channels, side)

    monkeypatch.setattr(data_files, "decode_images", counting)
    return counts


def test_cifar10_subset_decodes_only_needed(cifar10_root: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAASP_CACHE", str(tmp_path))  # empty cache: nothing decoded before
    counts = count_decodes(monkeypatch)
    ds = load_dataset(DataConfig("cifar10", str(cifar10_root), train_subset=5000, test_subset=2000))
    assert sorted(counts) == [2000, 5000]
    assert (ds.train_size, ds.test_size, ds.num_classes) == (5000, 2000, 10)
    assert ds.train_x.shape[1:] == (3, 32, 32) and ds.test_x.shape == (2000, 3, 32, 32)
    assert 0 <= int(ds.train_y.min()) and int(ds.train_y.max()) == 9
    assert torch.bincount(ds.train_y, minlength=10).min() > 400  # a random draw, not one class
    mean = ds.train_x.float().mean((0, 2, 3)) / 255
    assert mean.tolist() == pytest.approx(CIFAR_MEAN, abs=0.015)
    assert (ds.pad, ds.flip) == (4, True) and ds.mean == data_sources.CIFAR10.stats[0]
    x, y = next(ds.train_batches(128, epoch_seed=0))
    assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32


def test_cifar10_full_split_cached(cifar10_root: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAASP_CACHE", str(tmp_path))
    counts = count_decodes(monkeypatch)
    cfg = DataConfig("cifar10", str(cifar10_root), train_subset=200)
    first = load_dataset(cfg)
    assert sorted(counts) == [200, 10000] and first.test_size == 10000
    assert len(list((tmp_path / "decoded").glob("*.npy"))) == 2  # test images + labels
    counts.clear()
    second = load_dataset(cfg)
    assert counts == [200] and torch.equal(second.test_x, first.test_x)
    assert np.array_equal(second.test_y.numpy(), first.test_y.numpy())


def test_cifar10_zip_as_data_root(cifar10_zip: Path, cifar10_root: Path) -> None:
    ds = load_dataset(DataConfig("cifar10", str(cifar10_zip), train_subset=500, test_subset=300))
    assert (ds.train_size, ds.test_size, ds.image_size) == (500, 300, 32)
    assert ds.describe()["root"].startswith(str(data_files.cache_dir()))
