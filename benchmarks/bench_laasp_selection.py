"""Time LAASP selection steps: the authors' loop (deep copy + re-trace + full forward per
candidate) against ours (one trace, masks, cached prefixes, deduplication), exact and
approximate, on the same network and subset in the same run; check the picks agree.

    python benchmarks/bench_laasp_selection.py --model resnet56 --subset 64 --steps 5 --data-root ../shared/data/cifar10-jpeg.zip

Per step it prints the time of each method and whether the picks are identical.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from harness.data import DataConfig, load_dataset
from harness.models import build_model
from laasp.config import LAASPConfig
from laasp.pruner import LAASP
from laasp.racing import RaceSettings, race
from laasp.reference import reference_select


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet56")
    p.add_argument("--data-root", default="../shared/data/cifar10-jpeg.zip")
    p.add_argument("--subset", type=int, default=64, help="loss-subset images (the authors' CPU setting: 64)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--approx-start-fraction", type=float, default=0.125)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_dataset(DataConfig("cifar10", args.data_root, train_subset=max(args.subset, 1000), test_subset=100))
    x, y = data.loss_subset(args.subset, seed=args.seed)
    model = build_model(args.model, 10, 3).eval()
    cfg = LAASPConfig(target_flops=0.9, selection="exact", chunk_size=max(64, args.subset))
    pruner = LAASP(model, cfg, x, y, 32, 3)
    print(f"{args.model}, {len(pruner.net.layers)} prunable convs x {len(cfg.criteria)} criteria, subset {args.subset} "
          f"real CIFAR-10 images, {args.threads} threads, random-init weights")
    rows = []
    for step in range(1, args.steps + 1):
        t = time.perf_counter()
        ref = reference_select(pruner)
        t_ref = time.perf_counter() - t

        t = time.perf_counter()
        approx = race(pruner.evaluator, pruner.candidates(), RaceSettings(args.approx_start_fraction))
        t_approx = time.perf_counter() - t

        t = time.perf_counter()
        result = pruner.step()  # the exact selection, applied
        t_exact = time.perf_counter() - t

        # the same network: the same layer and a criterion that chose the same filters
        same_exact = ref.layer == result.layer and (ref.criterion == result.criterion
                                                    or ref.criterion in result.tied_criteria)
        same_approx = (result.layer, result.criterion) in approx.sources
        rows.append((t_ref, t_exact, t_approx, same_exact, same_approx))
        print(f"step {step}: authors {t_ref:7.2f}s | ours exact {t_exact:6.2f}s ({t_ref / t_exact:5.1f}x) "
              f"pick {'==' if same_exact else '!='} authors ({result.layer}/{result.criterion}, loss {result.loss:.5f} "
              f"vs {ref.loss:.5f}) | approx {t_approx:6.2f}s ({t_ref / t_approx:5.1f}x) "
              f"pick {'==' if same_approx else '!='} exact | {result.candidates} distinct candidates")
    ref_t, ex_t, ap_t = (statistics.median(r[i] for r in rows) for i in range(3))
    print(f"median per step: authors {ref_t:.2f}s, ours exact {ex_t:.2f}s ({ref_t / ex_t:.1f}x faster), "
          f"approx {ap_t:.2f}s ({ref_t / ap_t:.1f}x faster)")
    print(f"identical picks: exact vs authors {sum(r[3] for r in rows)}/{len(rows)}, "
          f"approx vs exact {sum(r[4] for r in rows)}/{len(rows)}")


if __name__ == "__main__":
    main()
