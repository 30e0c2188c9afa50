"""ImageNet input throughput (images/s): the PIL DataLoader path (``--decoder pil``) against the
batched torchvision.io pipeline (``--decoder torchvision``), same images, same run, alternating.

No ImageNet copy is at hand, so the images are the shared CIFAR-10 JPEGs upscaled (bicubic) to a
shorter side of 256 px, in three shapes (256x256, 256x341, 341x256: pre-resized ImageNet's
usual aspect ratios), re-encoded as JPEG quality 90 into an ImageFolder tree under the cache
folder (``$LAASP_CACHE`` or .cache/, outside git; built once). Both pipelines are driven
through the dataset interface a run uses: one pass of ``train_batches`` (random-resized-crop
224, flip, normalisation, tensors on the device) per round and worker count; round 0 warms
up (page cache, worker start) and is not counted; medians are reported.

    python benchmarks/bench_imagenet_input.py --images 2000 --rounds 3 --workers 0,2
    python benchmarks/bench_imagenet_input.py --device cuda --images 20000 --workers 8,16   # on a GPU machine
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

DECODERS = ("pil", "torchvision")
SHAPES = ((256, 256), (256, 341), (341, 256))  # (h, w)


def build_tree(source: Path, images: int, test_images: int, cache: Path) -> Path:
    """An ImageNet-like ImageFolder tree from the CIFAR-10 zip (built once, reused)."""
    from PIL import Image

    root = cache / "imagenet_like" / f"cifar10-256px-{images}-{test_images}"
    if (root / "done").exists():
        return root
    with zipfile.ZipFile(source) as zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(".jpg"))
        for split, count, folder in (("train", images, "train"), ("test", test_images, "val")):
            picked = [n for n in names if f"/{split}/" in n]
            step = max(1, len(picked) // count)  # spread over all classes (files are sorted by class)
            for k, name in enumerate(picked[::step][:count]):
                cls = name.split("/")[-2]
                h, w = SHAPES[k % len(SHAPES)]
                out = root / folder / cls / Path(name).name
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as f, Image.open(f) as im:
                    im.convert("RGB").resize((w, h), Image.BICUBIC).save(out, quality=90)
    (root / "done").write_text("ok\n")
    return root


def one_pass(data, batch_size: int, seed: int) -> tuple[int, float]:
    seen, start = 0, time.perf_counter()
    for x, y in data.train_batches(batch_size, seed):
        seen += y.shape[0]
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return seen, time.perf_counter() - start


def measure(root: Path, batch_size: int, workers: list[int], rounds: int, device: str, say=print) -> dict[str, Any]:
    from harness.data import DataConfig, load_dataset
    from harness.train.device import select_device

    dev = select_device(device)
    rows = []
    for w in workers:
        sets = {d: load_dataset(DataConfig("imagenet", str(root), loader_workers=w, decoder=d), dev) for d in DECODERS}
        rates: dict[str, list[float]] = {d: [] for d in DECODERS}
        for r in range(rounds + 1):
            order = DECODERS if r % 2 else DECODERS[::-1]  # alternate who goes first
            for d in order:
                n, secs = one_pass(sets[d], batch_size, seed=r)
                if r:
                    rates[d].append(n / secs)
            if r:
                say(f"workers {w}, round {r}: " + " | ".join(f"{d} {rates[d][-1]:7.1f} img/s" for d in DECODERS))
        med = {d: statistics.median(v) for d, v in rates.items()}
        rows.append({"workers": w, "images": n, **{f"{d}_img_s": med[d] for d in DECODERS},
                     **{f"{d}_rounds": rates[d] for d in DECODERS}, "speedup": med["torchvision"] / med["pil"]})
        say(f"workers {w}: median pil {med['pil']:.1f} img/s, torchvision {med['torchvision']:.1f} img/s, "
            f"{rows[-1]['speedup']:.2f}x")
    return {"device": str(dev), "batch_size": batch_size, "rounds": rounds, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"ImageNet-like input, {result['images']} training images ({result['shapes']}), batch "
             f"{result['batch_size']}, {result['device']}, {result['rounds']} rounds after a warm-up (medians); "
             f"{result['cpus']} CPU core(s), load average {result['load_before']} before, {result['load_after']} after.",
             "", "| DataLoader workers | PIL (`--decoder pil`) | torchvision.io batched (`--decoder torchvision`) | ratio |",
             "|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['workers']} | {row['pil_img_s']:.0f} img/s | {row['torchvision_img_s']:.0f} img/s | "
                     f"{row['speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from harness.data.files import cache_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=str(Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg.zip"))
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--test-images", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--out", default=None, help="folder for summary.md and summary.json")
    args = p.parse_args()
    load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())
    root = build_tree(Path(args.source), args.images, args.test_images, cache_dir())
    print(f"{args.images} images under {root}")
    result = measure(root, args.batch_size, [int(w) for w in args.workers.split(",")], args.rounds, args.device)
    result.update(images=args.images, shapes=", ".join(f"{w}x{h}" for h, w in SHAPES) + " px JPEG q90",
                  cpus=len(os.sched_getaffinity(0)), torch_threads=torch.get_num_threads(), torch=torch.__version__,
                  load_before=load_before, load_after=" ".join(f"{v:.1f}" for v in os.getloadavg()))
    import torchvision

    result["torchvision"] = torchvision.__version__
    text = markdown(result)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.md").write_text(text)
        (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
