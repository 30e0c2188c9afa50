"""Time LAASP selection steps: the authors' loop (deep copy + re-trace + full forward per
candidate) against ours (one trace, masks, cached prefixes, deduplication), exact and
approximate, on the same network and subset in the same run; check the picks agree.

    python benchmarks/bench_laasp_selection.py --model resnet56 --subset 64 --steps 5 --data-root ../shared/data/cifar10-jpeg.zip
    python benchmarks/bench_laasp_selection.py --subset 10000 --steps 1 --no-approx --device cuda   # on a GPU

Per step it prints the time of each method and whether the picks are identical. The network is
trained by default (`fixtures.trained_fixture`: the model trained 5 epochs on 10,000 real
CIFAR-10 images, made once under ``.cache/fixtures/``), so candidate losses are close as in a
real run; ``--random-init`` times the untrained network instead (losses far apart: picks agree
more easily, the timings are the same).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def measure(data_root: str, model_name: str = "resnet56", subset: int = 64, steps: int = 5,
            approx: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu",
            say=print, trained: bool = True) -> dict[str, Any]:
    """Per step: the authors' loop, ours exact (applied) and, unless ``approx`` is None, ours
    approximate with LAASP's default race overridden by ``approx`` (``{}``: the defaults; keys
    ``approx_start_fraction``, ``approx_eta``, ``approx_confidence``, ``approx_precision``); times, speed-ups and whether
    the picks agree. Trained weights unless ``trained`` is False (random init)."""
    from harness.data import DataConfig, load_dataset
    from harness.models import build_model
    from harness.train.device import Precision, select_device
    from laasp.config import LAASPConfig
    from laasp.pruner import LAASP
    from laasp.racing import race
    from laasp.reference import reference_select

    dev = select_device(device)
    torch.manual_seed(seed)
    data = load_dataset(DataConfig("cifar10", data_root, train_subset=max(subset, 1000), test_subset=100), dev)
    x, y = data.loss_subset(subset, seed=seed)
    if trained:
        from fixtures import trained_fixture
        from harness.job.checkpoint import load_checkpoint

        network = load_checkpoint(trained_fixture(data_root, model_name, seed=seed, device=device, say=say))[0]
        weights = "trained (benchmarks/fixtures.py: 5 epochs on 10,000 real CIFAR-10 images)"
    else:
        network, weights = build_model(model_name, 10, 3), "random init"
    model = Precision(dev).prepare_model(network.to(dev)).eval()  # as a run holds it
    cfg = LAASPConfig(target_flops=0.9, selection="exact", chunk_size=min(256, max(64, subset)), **(approx or {}))
    race_settings = cfg.race_settings()
    pruner = LAASP(model, cfg, x, y, 32, 3)
    say(f"{model_name}, {len(pruner.net.layers)} prunable convs x {len(cfg.criteria)} criteria, subset {subset} "
        f"images from {data.root}, {dev}, {torch.get_num_threads()} threads, {weights} weights")

    def timed(fn):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return out, time.perf_counter() - t

    rows = []
    for step in range(1, steps + 1):
        ref, t_ref = timed(lambda: reference_select(pruner))
        pick, t_approx = (None, float("nan"))
        if approx is not None:
            pick, t_approx = timed(lambda: race(pruner.evaluator, pruner.candidates(), race_settings))
        result, t_exact = timed(pruner.step)  # the exact selection, applied
        # the same network: the same layer and a criterion that chose the same filters
        same_exact = ref.layer == result.layer and (ref.criterion == result.criterion
                                                    or ref.criterion in result.tied_criteria)
        same_approx = None if pick is None else (result.layer, result.criterion) in pick.sources
        rows.append({"step": step, "reference_s": t_ref, "exact_s": t_exact, "approx_s": t_approx,
                     "exact_equals_reference": same_exact, "approx_equals_exact": same_approx,
                     "candidates": result.candidates, "pick": f"{result.layer}/{result.criterion}",
                     "loss": result.loss, "reference_loss": ref.loss})
        say(f"step {step}: authors {t_ref:7.2f}s | ours exact {t_exact:6.2f}s ({t_ref / t_exact:5.1f}x) "
            f"pick {'==' if same_exact else '!='} authors ({result.layer}/{result.criterion}, loss {result.loss:.5f} "
            f"vs {ref.loss:.5f})" + ("" if pick is None else f" | approx {t_approx:6.2f}s ({t_ref / t_approx:5.1f}x) "
                                     f"pick {'==' if same_approx else '!='} exact")
            + f" | {result.candidates} distinct candidates")
    ref_t, ex_t = (statistics.median(r[k] for r in rows) for k in ("reference_s", "exact_s"))
    summary = {"model": model_name, "subset": subset, "steps": steps, "device": str(dev), "weights": weights,
               "rows_per_forward": pruner.evaluator.plan[1] if pruner.evaluator.plan else None,
               "reference_s": ref_t, "exact_s": ex_t, "exact_speedup": ref_t / ex_t,
               "exact_equals_reference": sum(r["exact_equals_reference"] for r in rows), "per_step": rows}
    line = f"median per step: authors {ref_t:.2f}s, ours exact {ex_t:.2f}s ({ref_t / ex_t:.1f}x faster)"
    if approx is not None:
        summary.update(race=race_settings.__dict__, race_label=race_settings.describe())
        ap_t = statistics.median(r["approx_s"] for r in rows)
        summary.update(approx_s=ap_t, approx_speedup=ref_t / ap_t,
                       approx_equals_exact=sum(r["approx_equals_exact"] for r in rows))
        line += f", approx {ap_t:.2f}s ({ref_t / ap_t:.1f}x faster)"
    say(line)
    say(f"identical picks: exact vs authors {summary['exact_equals_reference']}/{len(rows)}"
        + ("" if approx is None else f", approx vs exact {summary['approx_equals_exact']}/{len(rows)}"))
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet56")
    p.add_argument("--data-root", default="../shared/data/cifar10-jpeg.zip")
    p.add_argument("--subset", type=int, default=64, help="loss-subset images (the authors' CPU setting: 64)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--approx-start-fraction", type=float, help="race's first-round share (default: LAASP's)")
    p.add_argument("--approx-eta", type=int, help="race's elimination factor (default: LAASP's)")
    p.add_argument("--approx-precision", choices=("fp32", "bf16"), help="race's forwards (default: LAASP's, fp32)")
    p.add_argument("--no-approx", action="store_true", help="time only the exact selection against the authors'")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--random-init", action="store_true", help="untrained weights instead of the trained fixture")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    measure(args.data_root, args.model, args.subset, args.steps,
            None if args.no_approx else {k: v for k, v in (("approx_start_fraction", args.approx_start_fraction),
                                                           ("approx_eta", args.approx_eta),
                                                           ("approx_precision", args.approx_precision))
                  if v is not None},
            args.seed, args.device,
            trained=not args.random_init)


if __name__ == "__main__":
    main()
