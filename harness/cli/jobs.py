"""``run_bench.py train``, ``eval``, ``info`` and ``run``: one job from flags, or a saved checkpoint."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.cli.commands import add_option_group, command
from harness.job.options import PRECISIONS, job_config_from_options, pruner_config_from_options


def state_path(cfg) -> Path | None:
    """Where an interruptible run keeps its state: rerunning the same command resumes from it."""
    return Path(cfg.out) / "state.pt" if cfg.out else None


def result_line(record: dict, out: str | None = None) -> str:
    f, fl, pa = record["final"], record["flops"], record["params"]
    where = f" -> {Path(out) / 'record.json'}" if out else ""
    scratch = record.get("scratch")
    group = f"scratch-{scratch['budget']}[{scratch['source_group']}]" if scratch else f"pruner={record['pruner']}"
    return (f"result: {record['model']} {record['dataset']} {group} seed={record['seed']} "
            f"top1={f['top1']:.2f}% top5={f['top5']:.2f}% loss={f['loss']:.4f} "
            f"flops={fl['after'] / 1e6:.2f}M ({100 * fl['reduction']:.1f}% less) params={pa['after'] / 1e6:.3f}M "
            f"epochs={record['epochs_trained']} time={record['wall_time_s']:.1f}s{where}")


# ---------------------------------------------------------------- train
def _train_parser(p: argparse.ArgumentParser) -> None:
    add_option_group(p, "training")
    add_option_group(p, "data")


def _train(args: argparse.Namespace) -> int:
    from harness.job.run import run_job

    cfg = job_config_from_options(vars(args))
    record = run_job(cfg, state_path=state_path(cfg))
    print(result_line(record, cfg.out))
    return 0


command("train", "train and evaluate an unpruned baseline")((_train_parser, _train))


# ---------------------------------------------------------------- eval
def _eval_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint.pt written by train/run")
    p.add_argument("--data-root", help="override the data root recorded in the checkpoint")
    p.add_argument("--test-subset", type=int, help="override the test subset recorded in the checkpoint")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="override the precision the run recorded (default: the run's own; fp32 on a CPU)")
    p.add_argument("--json", action="store_true")


def recorded_precision(run: dict) -> str:
    """The precision a run computed in, from its checkpoint's record (older records: its config)."""
    if isinstance(run.get("precision"), dict):
        return run["precision"]["compute"]
    config = run.get("config") or {}
    if "precision" in config:
        return config["precision"]
    return "auto" if config.get("amp", True) else "fp32"


def _eval(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from harness.job.checkpoint import load_checkpoint
    from harness.job.records import resolve_path
    from harness.data import DataConfig, load_dataset
    from harness.train.device import Precision, select_device
    from harness.train.engine import evaluate
    from harness.prune.flops import count_cost

    model, payload = load_checkpoint(args.checkpoint)
    run = payload["meta"].get("record", {})
    data_cfg = DataConfig.from_record(run["config"]["data"])
    # Same data settings as the run (train subset included: an ImageFolder set's normalisation
    # statistics come from the training images it loaded).
    recorded_root = data_cfg.data_root and str(resolve_path(data_cfg.data_root))  # records: repository-relative
    data_cfg = replace(data_cfg, data_root=args.data_root or recorded_root,
                       test_subset=args.test_subset if args.test_subset is not None else data_cfg.test_subset)
    data_cfg.validate()
    device = select_device(args.device)
    wanted = args.precision or recorded_precision(run)
    if args.precision is None and device.type != "cuda" and wanted in ("bf16", "fp16"):
        print(f"note: the run computed in {wanted} on a GPU; {device} evaluates in fp32, so the numbers may "
              "differ slightly from its record", file=sys.stderr)
        wanted = "fp32"
    # a deterministic run is re-evaluated with the same kernels, so its top-1 comes back exactly
    deterministic = bool((run.get("precision") or {}).get("deterministic", False))
    precision = Precision(device, mode=wanted, deterministic=deterministic)
    precision.configure()
    data = load_dataset(data_cfg, device)
    model = precision.prepare_model(model)
    metrics = evaluate(model, data.test_batches(512), precision)
    cost = count_cost(model, data.image_size, data.in_channels)
    out = {"checkpoint": args.checkpoint, "model": payload["model"], "dataset": data_cfg.dataset, **metrics,
           "flops": cost.flops, "params": cost.params, "device": str(device), "precision": precision.name}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"eval: {out['model']} {out['dataset']} top1={metrics['top1']:.2f}% top5={metrics['top5']:.2f}% "
              f"loss={metrics['loss']:.4f} flops={cost.flops / 1e6:.2f}M params={cost.params / 1e6:.3f}M "
              f"({precision.name} on {device})")
    return 0


command("eval", "evaluate a saved checkpoint")((_eval_parser, _eval))


# ---------------------------------------------------------------- info
def _info_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="registered model name")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--json", action="store_true", help='print {"flops": int, "params": int}')
    p.add_argument("--list", action="store_true", help="list registered models, datasets and pruners")
    p.add_argument("--methods", action="store_true",
                   help="the pruners' method table (paper, official code, faithful, adapted, defaults) in markdown")


def _info(args: argparse.Namespace) -> int:
    from harness.data import DATASETS, dataset_shape
    from harness.prune.flops import count_cost
    from harness.models import MODELS, build_model, check_input_size

    if args.methods:
        from harness.prune.plugins import load_builtin_pruners
        from harness.prune.pruner import method_table

        load_builtin_pruners()
        print(method_table(), end="")
        return 0
    if args.list or not args.model:
        print("models:   " + ", ".join(MODELS.names()))
        print("datasets: " + ", ".join(DATASETS.names()))
        try:
            from harness.prune.plugins import load_builtin_pruners
            from harness.prune.pruner import PRUNERS

            load_builtin_pruners()
            print("pruners:  " + ", ".join(PRUNERS.names()))
        except ImportError:
            pass
        return 0
    num_classes, in_channels, size = dataset_shape(args.dataset)
    check_input_size(args.model, size)
    cost = count_cost(build_model(args.model, num_classes, in_channels), size, in_channels)
    if args.json:
        print(json.dumps({"flops": cost.flops, "params": cost.params}))
    else:
        print(f"{args.model} on {args.dataset} ({in_channels}x{size}x{size}, {num_classes} classes): "
              f"{cost.flops / 1e6:.2f}M FLOPs (multiply-accumulates of conv+linear), {cost.params / 1e6:.3f}M params")
    return 0


command("info", "print a model's FLOPs and parameters")((_info_parser, _info))


# ---------------------------------------------------------------- run (train with a pruner)
def _run_parser(p: argparse.ArgumentParser) -> None:
    add_option_group(p, "training")
    add_option_group(p, "pruning")
    add_option_group(p, "data")


def _run(args: argparse.Namespace) -> int:
    from harness.job.run import run_job

    options = vars(args)
    cfg = job_config_from_options(options, pruner_config=pruner_config_from_options(options))
    record = run_job(cfg, state_path=state_path(cfg))
    print(result_line(record, cfg.out))
    return 0


command("run", "train with a pruner: train, prune to --target-flops, train to --epochs")((_run_parser, _run))
