"""Training throughput (images/s) of our engine against the authors' pipeline, same run, same CPU.

Ours: the training images decoded once into a uint8 tensor, random crop + flip done on whole
batches as tensor ops, the shared `train_epoch` with the engine's device settings
(`harness.train.device.Precision`: channels_last; float32 on CPU). Authors': torchvision ImageFolder + PIL
transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize) through a
DataLoader with worker processes, and a plain SGD loop. Same model, same real CIFAR-10
images, same batch size and optimizer; the two alternate over several rounds and the median
of each is reported.

    python benchmarks/bench_throughput.py --data-root ../shared/data/cifar10-jpeg.zip --images 5000 --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from torch.utils.data import DataLoader, Subset
from torchvision.datasets import ImageFolder

from harness.data import DataConfig, find_imagefolder, load_dataset
from harness.train.device import Precision
from harness.train.engine import OptimConfig, make_optimizer, train_epoch
from harness.models import build_model


def authors_epoch(model, loader, optimizer) -> tuple[int, float]:
    model.train()
    seen, start = 0, time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += y.shape[0]
    return seen, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/data/cifar10-jpeg.zip")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the authors' pipeline")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    cfg = DataConfig("cifar10", args.data_root, train_subset=args.images, test_subset=100)
    data = load_dataset(cfg)
    folder, _ = find_imagefolder(Path(data.root))
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(data.mean, data.std)])
    full = ImageFolder(str(folder), transform=tf)
    picked = torch.randperm(len(full), generator=torch.Generator().manual_seed(0))[: args.images].tolist()
    loader = DataLoader(Subset(full, picked), batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        persistent_workers=args.workers > 0, drop_last=False)
    precision = Precision(torch.device("cpu"), amp=False)
    optim_cfg = OptimConfig(lr=0.05, batch_size=args.batch_size)
    ours_model, theirs_model = precision.prepare_model(build_model(args.model, 10, 3)), build_model(args.model, 10, 3)
    ours_opt, theirs_opt = make_optimizer(ours_model, optim_cfg), make_optimizer(theirs_model, optim_cfg)
    print(f"{args.model}, {args.images} real CIFAR-10 training images, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads, authors' loader with {args.workers} workers")
    ours, theirs = [], []
    for r in range(args.rounds + 1):  # round 0 warms up both (worker start-up, allocator)
        stats = train_epoch(ours_model, data.train_batches(args.batch_size, r), ours_opt, 0.05, precision)
        n, secs = authors_epoch(theirs_model, loader, theirs_opt)
        if r:
            ours.append(stats["images"] / stats["train_time_s"])
            theirs.append(n / secs)
            print(f"round {r}: ours {ours[-1]:7.1f} img/s | authors' pipeline {theirs[-1]:7.1f} img/s")
    o, t = statistics.median(ours), statistics.median(theirs)
    print(f"median: ours {o:.1f} img/s, authors' pipeline {t:.1f} img/s, speed-up {o / t:.2f}x")


if __name__ == "__main__":
    main()
