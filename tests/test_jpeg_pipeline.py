"""The batched ImageNet input pipeline (``--decoder torchvision``, harness/data/jpeg.py): torchvision's
augmentations drawn vectorised, the resampling equal to torchvision's tensor transforms, seeded
determinism, and rank shards that are disjoint, cover the epoch and augment as one rank would."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.data import DataConfig, load_dataset
from harness.data.config import IMAGENET_STATS
from harness.data.jpeg import (ATTEMPTS, RATIO, center_geometry, decode_files, draw_crops, random_resized_geometry,
                               resample, resample_batched, resample_weights)
from harness.errors import UserError

SIZES = [(120, 90), (80, 200), (256, 256), (300, 110), (97, 97)]  # (h, w): tall, wide, square, odd


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Two classes of noisy JPEGs of several shapes (one grayscale), plus a PNG, in train/ and val/."""
    from PIL import Image

    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 5), ("val", 2)):
        for c, cls in enumerate(("a", "b")):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                h, w = SIZES[(i + c) % len(SIZES)]
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) // 2 + (100 if c == 0 else 0)
                image = Image.fromarray(pixels)
                if i == 1:
                    image = image.convert("L")
                image.save(root / split / cls / f"{i}.{'png' if i == 4 else 'jpg'}", quality=90)
    return root


def dataset(root: Path, decoder: str = "torchvision", workers: int = 0):
    return load_dataset(DataConfig("imagenet", str(root), loader_workers=workers, decoder=decoder))


def as_uint8(x: torch.Tensor) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET_STATS)
    return ((x * std + mean) * 255).round().to(torch.uint8)


def test_test_batches_are_torchvisions_evaluation_transform(tree) -> None:
    from torchvision.transforms import v2

    ds = dataset(tree)
    xs, ys = zip(*ds.test_batches(3))
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and y.tolist() == [0, 0, 1, 1]
    reference = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224)])
    expected = torch.stack([reference(im) for im in decode_files(ds.test.files)])
    unnormalized = (x * torch.tensor(IMAGENET_STATS[1]).view(1, 3, 1, 1) + torch.tensor(IMAGENET_STATS[0]).view(1, 3, 1, 1))
    assert torch.allclose(unnormalized * 255, expected.float(), atol=1e-3)  # exact up to float rounding
    assert ds.describe()["decoder"] == "torchvision"


def test_crop_boxes_are_torchvisions_get_params() -> None:
    """The vectorised boxes equal torchvision's RandomResizedCrop.get_params fed the same numbers."""
    gen = torch.Generator().manual_seed(0)
    sizes = torch.tensor([[224, 224], [500, 375], [40, 400], [400, 30], [17, 23]] * 40)
    draws = draw_crops(len(sizes), gen)
    got = random_resized_geometry(draws, sizes, 224)
    fallbacks = 0
    for (hh, ww), d, g in zip(sizes.tolist(), draws.tolist(), got.tolist()):
        box = None
        for a in range(ATTEMPTS):  # torchvision's loop, transcribed
            area = hh * ww * d[a]
            ratio = math.exp(d[ATTEMPTS + a])
            w, h = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < w <= ww and 0 < h <= hh:
                box = (math.floor(d[-3] * (hh - h + 1)), math.floor(d[-2] * (ww - w + 1)), h, w)
                break
        if box is None:
            fallbacks += 1
            in_ratio = ww / hh
            w, h = (ww, int(round(ww / RATIO[0]))) if in_ratio < RATIO[0] else (
                (int(round(hh * RATIO[1])), hh) if in_ratio > RATIO[1] else (ww, hh))
            box = ((hh - h) // 2, (ww - w) // 2, h, w)
        assert (g[0][0], g[1][0], g[0][1], g[1][1]) == box and g[0][2:] == g[1][2:] == [224, 0]
    assert fallbacks > 0  # the extreme shapes exercised the centre-crop fallback


def test_resampling_is_pytorchs_antialiased_resize_on_both_paths() -> None:
    gen = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8) for h, w in SIZES]
    sizes = torch.tensor(SIZES)
    geometry = random_resized_geometry(draw_crops(len(SIZES), gen), sizes, 64)
    flips = torch.tensor([True, False, True, False, False])
    each = resample(images, geometry, 64, flips)  # the CPU path: uint8 resize per image
    batched = resample_batched(images, geometry, 64, flips)  # the GPU path, run on the CPU here
    assert each.dtype == batched.dtype == torch.uint8 and each.shape == (5, 3, 64, 64)
    assert (each.int() - batched.int()).abs().max() <= 1
    (y0, h, _, _), (x0, w, _, _) = geometry[0].tolist()
    region = images[0][None, :, y0:y0 + h, x0:x0 + w].float()
    reference = F.interpolate(region, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    rows = resample_weights(geometry[:1, 0], 64, 120)
    cols = resample_weights(geometry[:1, 1], 64, 90)
    assert torch.allclose(rows[0] @ images[0].float() @ cols[0].T, reference[0], atol=1e-3)
    assert (each[0].int() - reference[0].round().flip(2).int()).abs().max() <= 1  # image 0 is mirrored


def test_center_geometry_keeps_the_short_side_at_256() -> None:
    geometry = center_geometry(torch.tensor([[300, 400], [400, 300], [256, 256]]), 256, 224)
    assert geometry[:, :, 2].tolist() == [[256, 341], [341, 256], [256, 256]]
    assert geometry[:, :, 3].tolist() == [[16, 58], [58, 16], [16, 16]]


def test_same_seed_same_batches_whatever_the_workers(tree) -> None:
    ds = dataset(tree)
    a, b = list(ds.train_batches(4, epoch_seed=3)), list(ds.train_batches(4, epoch_seed=3))
    assert [len(y) for _, y in a] == [4, 4, 2]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(torch.cat([x for x, _ in a]), torch.cat([x for x, _ in ds.train_batches(4, epoch_seed=4)]))
    pooled = list(dataset(tree, workers=1).train_batches(4, epoch_seed=3))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, pooled))
    pixels = as_uint8(a[0][0])
    assert pixels.shape == (4, 3, 224, 224)
    lx, ly = ds.loss_subset(3, seed=2)
    assert lx.shape == (3, 3, 224, 224) and torch.equal(lx, ds.loss_subset(3, seed=2)[0])


@pytest.mark.parametrize("decoder", ["torchvision", "pil"])
def test_rank_shards_are_equal_cover_the_epoch_and_augment_alike(tree, decoder) -> None:
    ds = dataset(tree, decoder)
    whole_x, whole_y = (torch.cat(t) for t in zip(*ds.train_batches(3, epoch_seed=5)))
    order = torch.randperm(ds.train_size, generator=torch.Generator().manual_seed(5))
    seen, sizes = [], set()
    for rank in range(3):
        x, y = (torch.cat(t) for t in zip(*ds.train_batches(3, epoch_seed=5, rank=rank, world=3)))
        # DistributedSampler's rule: positions rank, rank + 3, ... of the epoch padded with its first positions
        positions = torch.arange(rank, -(-ds.train_size // 3) * 3, 3) % ds.train_size
        assert torch.equal(y, whole_y[positions]) and torch.equal(x, whole_x[positions])
        seen += order[positions].tolist()
        sizes.add(len(y))
    assert len(sizes) == 1  # every rank as many images, so as many steps: no rank waits on a collective
    assert set(seen) == set(range(ds.train_size))  # covering; only the padding repeats an image
    assert len(seen) - ds.train_size < 3
    with pytest.raises(UserError, match="rank 3 is not in"):
        next(ds.train_batches(3, epoch_seed=5, rank=3, world=3))


def test_unknown_decoder_is_refused(tree) -> None:
    with pytest.raises(UserError, match="unknown decoder 'nvdec'; registered: pil, torchvision"):
        dataset(tree, "nvdec")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_decoding_gives_the_cpu_batches(tree) -> None:
    """nvJPEG and the batched resampling on the GPU: the CPU run's images to a grey level or two
    (two IDCT implementations, then float against fixed-point resampling)."""
    cpu = dataset(tree)
    gpu = load_dataset(DataConfig("imagenet", str(tree), loader_workers=0), "cuda")
    for a, b in zip(cpu.train_batches(4, epoch_seed=3), gpu.train_batches(4, epoch_seed=3)):
        assert torch.equal(a[1], b[1].cpu())
        diff = (as_uint8(a[0]).int() - as_uint8(b[0].cpu()).int()).abs()
        assert diff.float().mean() < 1.0 and diff.max() <= 40, (diff.float().mean(), diff.max())


def test_the_global_rng_is_left_alone(tree) -> None:
    rng = torch.get_rng_state()
    list(dataset(tree).train_batches(4, epoch_seed=1))
    assert torch.equal(rng, torch.get_rng_state())
