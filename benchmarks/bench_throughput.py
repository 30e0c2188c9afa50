"""Training throughput (images/s) of our engine against the authors' pipeline, same run, same device.

Ours: the training images decoded once into a uint8 tensor on the device, random crop + flip
done on whole batches as tensor ops, the shared `train_epoch` with the engine's device settings
(`harness.train.device.Precision`: channels_last; fp32 on CPU, mixed precision on CUDA unless
``--precision`` says otherwise). Authors': torchvision ImageFolder + PIL transforms
(RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize) through a DataLoader
with worker processes (pinned memory on CUDA), and a plain fp32 SGD loop, as their scripts
train. Same model, same images, same batch size and optimizer; the two alternate over several
rounds and the median of each is reported. With ``--compile`` ours also runs through
``torch.compile`` (a copy of the same network with its own optimizer) in the same rounds, its
compile time reported apart.

    python benchmarks/bench_throughput.py --data-root ../shared/data/cifar10-jpeg.zip --images 5000 --rounds 3
    python benchmarks/bench_throughput.py --model resnet56 --device cuda --workers 8 ...   # on a GPU
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def authors_epoch(model, loader, optimizer, device: torch.device) -> tuple[int, float]:
    model.train()
    seen, start = 0, time.perf_counter()
    on_cuda = device.type == "cuda"
    for x, y in loader:
        x, y = x.to(device, non_blocking=on_cuda), y.to(device, non_blocking=on_cuda)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += y.shape[0]
    if on_cuda:
        torch.cuda.synchronize(device)
    return seen, time.perf_counter() - start


def measure(data_root: str, model: str = "resnet20", images: int = 5000, batch_size: int = 128, workers: int = 2,
            rounds: int = 3, device: str = "cpu", precision: str = "auto", compiled: bool = False,
            say=print) -> dict[str, Any]:
    """Both pipelines (and ours compiled), alternating for ``rounds`` rounds after a warm-up one;
    medians and settings."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, Subset
    from torchvision.datasets import ImageFolder

    from harness.data import DataConfig, find_imagefolder, load_dataset
    from harness.models import build_model
    from harness.train.device import Precision, select_device
    from harness.train.compiled import CompiledTraining
    from harness.train.engine import OptimConfig, make_optimizer, train_epoch

    dev = select_device(device)
    ours_precision = Precision(dev, mode=precision)
    ours_precision.configure()
    data = load_dataset(DataConfig("cifar10", data_root, train_subset=images, test_subset=100), dev)
    folder, _ = find_imagefolder(Path(data.root))
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(data.mean, data.std)])
    full = ImageFolder(str(folder), transform=tf)
    picked = torch.randperm(len(full), generator=torch.Generator().manual_seed(0))[:images].tolist()
    loader = DataLoader(Subset(full, picked), batch_size=batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, drop_last=False, pin_memory=dev.type == "cuda")
    optim_cfg = OptimConfig(lr=0.05, batch_size=batch_size)
    ours_model = ours_precision.prepare_model(build_model(model, 10, 3))
    theirs_model = build_model(model, 10, 3).to(dev)
    ours_opt, theirs_opt = make_optimizer(ours_model, optim_cfg), make_optimizer(theirs_model, optim_cfg)
    settings = {"model": model, "images": images, "batch_size": batch_size, "device": str(dev),
                "torch_threads": torch.get_num_threads(), "reference_workers": workers,
                "ours": f"data on the device, batch augmentation, channels_last, {ours_precision.name}",
                "reference": "ImageFolder + PIL + DataLoader, fp32, contiguous (the authors' pipeline)"}
    say(f"{model}, {images} training images from {data.root}, batch {batch_size}, {dev}, ours "
        f"{ours_precision.name} + channels_last, authors' loader with {workers} workers in fp32")
    if compiled:  # as --compile trains: the engine's CompiledTraining, eager where torch.compile is unavailable
        compiled_net = copy.deepcopy(ours_model)
        compiling = CompiledTraining(enabled=True)
        compiled_model, compiled_opt = compiling.module(compiled_net), make_optimizer(compiled_net, optim_cfg)
    ours, theirs, comp, compile_s = [], [], [], None
    for r in range(rounds + 1):  # round 0 warms up all (worker start-up, allocator, cuDNN autotuning, compilation)
        stats = train_epoch(ours_model, data.train_batches(batch_size, r), ours_opt, 0.05, ours_precision)
        n, secs = authors_epoch(theirs_model, loader, theirs_opt, dev)
        if compiled:
            start = time.perf_counter()
            cstats = train_epoch(compiled_model, data.train_batches(batch_size, r), compiled_opt, 0.05, ours_precision)
            if r == 0:  # the warm-up epoch's extra time over eager is compilation
                compile_s = time.perf_counter() - start - stats["train_time_s"]
        if r:
            ours.append(stats["images"] / stats["train_time_s"])
            theirs.append(n / secs)
            if compiled:
                comp.append(cstats["images"] / cstats["train_time_s"])
            say(f"round {r}: ours {ours[-1]:8.1f} img/s | authors' pipeline {theirs[-1]:8.1f} img/s"
                + (f" | ours compiled {comp[-1]:8.1f} img/s" if compiled else ""))
    o, t = statistics.median(ours), statistics.median(theirs)
    say(f"median: ours {o:.1f} img/s, authors' pipeline {t:.1f} img/s, speed-up {o / t:.2f}x")
    result = {**settings, "rounds": rounds, "ours_img_s": o, "reference_img_s": t, "speedup": o / t,
              "ours_rounds": ours, "reference_rounds": theirs}
    if compiled:
        c = statistics.median(comp)
        say(f"compiled: {c:.1f} img/s, {c / o:.2f}x eager, {c / t:.2f}x the authors' pipeline; "
            f"compilation ~{compile_s:.0f} s")
        result.update(compiled_img_s=c, compiled_vs_eager=c / o, compiled_speedup=c / t, compile_s=compile_s,
                      compiled_rounds=comp, compile_fallback=compiling.fallback)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/data/cifar10-jpeg.zip")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the authors' pipeline")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--precision", default="auto", help="ours: auto (mixed on CUDA, fp32 on CPU), fp32, bf16, fp16")
    p.add_argument("--compile", action="store_true", help="also time ours through torch.compile")
    args = p.parse_args()
    measure(args.data_root, args.model, args.images, args.batch_size, args.workers, args.rounds, args.device,
            args.precision, compiled=args.compile)


if __name__ == "__main__":
    main()
