"""``run_bench.py``: the command line. Parses flags into typed configs, validated once here.

Every command raises `UserError` for bad input; `main` turns it into one ``error:`` line on
stderr and exit code 2, before any training starts.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from harness.engine import TrainingDiverged
from harness.errors import UserError
from harness.registry import Registry

# name -> (configure parser, run parsed args) ; commands register themselves (see bottom).
COMMANDS: Registry[tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = Registry("command")


def command(name: str, help: str):
    def wrap(pair):
        COMMANDS.register(name, help=help)(pair)
        return pair
    return wrap


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="digits", help="digits (embedded, default), cifar10, cifar100, imagenet, imagefolder")
    g.add_argument("--data-root", help="dataset folder (or a .zip of an ImageFolder tree)")
    g.add_argument("--train-subset", type=int, help="use a fixed random subset of N training images")
    g.add_argument("--test-subset", type=int, help="use a fixed random subset of N test images")
    g.add_argument("--subset-seed", type=int, default=0, help="seed of the subsets (same for every run seed)")
    g.add_argument("--download", action="store_true", help="CIFAR only: download into --data-root when missing")
    g.add_argument("--workers", type=int, default=4, help="DataLoader workers for ImageNet-size data")


def add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (defaults: the authors' recipe for the model family)")
    g.add_argument("--model", required=True, help="registered model name (run_bench.py info --list)")
    g.add_argument("--epochs", type=int, help="total schedule epochs")
    g.add_argument("--lr", type=float)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--milestones", type=int_list, help="epochs where lr *= gamma (default: the recipe's, scaled to --epochs)")
    g.add_argument("--gamma", type=float)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    g.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    g.add_argument("--out", help="folder for record.json and checkpoint.pt")
    g.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def job_config_from_args(args: argparse.Namespace, pruner_config=None):
    """Flags -> JobConfig, filling unset values from the model family's recipe."""
    from harness.data import DataConfig
    from harness.engine import OptimConfig
    from harness.job import JobConfig
    from harness.models import MODELS
    from harness.recipes import recipe_for

    recipe = recipe_for(MODELS.meta(args.model)["family"])
    epochs = args.epochs if args.epochs is not None else recipe.epochs
    if epochs < 1:
        raise UserError(f"--epochs must be >= 1 (got {epochs})")
    optim = OptimConfig(
        lr=_pick(args.lr, recipe.lr), momentum=args.momentum,
        weight_decay=_pick(args.weight_decay, recipe.weight_decay),
        milestones=args.milestones if args.milestones is not None else recipe.milestones(epochs),
        gamma=_pick(args.gamma, recipe.gamma), batch_size=_pick(args.batch_size, recipe.batch_size),
    )
    data = DataConfig(dataset=args.dataset, data_root=args.data_root, train_subset=args.train_subset,
                      test_subset=args.test_subset, subset_seed=args.subset_seed, download=args.download,
                      workers=args.workers)
    budget = getattr(args, "epoch_budget", None)
    if getattr(args, "match_epochs", None):
        from harness.job import epochs_of_record

        budget = epochs_of_record(args.match_epochs)
    cfg = JobConfig(model=args.model, data=data, optim=optim, epochs=epochs, seed=args.seed, device=args.device,
                    amp=not args.no_amp, out=args.out, progress=not args.quiet,
                    pruner=getattr(args, "pruner", None), pruner_config=pruner_config,
                    init_checkpoint=getattr(args, "from_checkpoint", None), epoch_budget=budget)
    cfg.validate()
    return cfg


def state_path(cfg):
    """Where an interruptible run keeps its state: rerunning the same command resumes from it."""
    from pathlib import Path

    return Path(cfg.out) / "state.pt" if cfg.out else None


def _pick(value, default):
    return default if value is None else value


def result_line(record: dict) -> str:
    f, fl, pa = record["final"], record["flops"], record["params"]
    where = f" -> {record['config']['out']}/record.json" if record["config"].get("out") else ""
    return (f"result: {record['model']} {record['dataset']} pruner={record['pruner']} seed={record['seed']} "
            f"top1={f['top1']:.2f}% top5={f['top5']:.2f}% loss={f['loss']:.4f} "
            f"flops={fl['after'] / 1e6:.2f}M ({100 * fl['reduction']:.1f}% less) params={pa['after'] / 1e6:.3f}M "
            f"epochs={record['epochs_trained']} time={record['wall_time_s']:.1f}s{where}")


# ---------------------------------------------------------------- train
def _train_parser(p: argparse.ArgumentParser) -> None:
    add_train_args(p)
    add_data_args(p)


def _train(args: argparse.Namespace) -> int:
    from harness.job import run_job

    cfg = job_config_from_args(args)
    record = run_job(cfg, state_path=state_path(cfg))
    print(result_line(record))
    return 0


command("train", "train and evaluate an unpruned baseline")((_train_parser, _train))


# ---------------------------------------------------------------- eval
def _eval_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint.pt written by train/run")
    p.add_argument("--data-root", help="override the data root recorded in the checkpoint")
    p.add_argument("--test-subset", type=int, help="override the test subset recorded in the checkpoint")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")


def _eval(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from harness.checkpoint import load_checkpoint
    from harness.data import DataConfig, load_dataset
    from harness.device import Precision, select_device
    from harness.engine import evaluate
    from harness.flops import count_cost

    model, payload = load_checkpoint(args.checkpoint)
    run = payload["meta"].get("record", {})
    data_cfg = DataConfig(**{k: v for k, v in run["config"]["data"].items()})
    # Same data settings as the run (train subset included: an ImageFolder set's normalisation
    # statistics come from the training images it loaded).
    data_cfg = replace(data_cfg, data_root=args.data_root or data_cfg.data_root,
                       test_subset=args.test_subset if args.test_subset is not None else data_cfg.test_subset)
    data_cfg.validate()
    device = select_device(args.device)
    data = load_dataset(data_cfg, device)
    precision = Precision(device, amp=True)
    model = precision.prepare_model(model)
    metrics = evaluate(model, data.test_batches(512), precision)
    cost = count_cost(model, data.image_size, data.in_channels)
    out = {"checkpoint": args.checkpoint, "model": payload["model"], "dataset": data_cfg.dataset, **metrics,
           "flops": cost.flops, "params": cost.params}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"eval: {out['model']} {out['dataset']} top1={metrics['top1']:.2f}% top5={metrics['top5']:.2f}% "
              f"loss={metrics['loss']:.4f} flops={cost.flops / 1e6:.2f}M params={cost.params / 1e6:.3f}M")
    return 0


command("eval", "evaluate a saved checkpoint")((_eval_parser, _eval))


# ---------------------------------------------------------------- info
def _info_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="registered model name")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--json", action="store_true", help='print {"flops": int, "params": int}')
    p.add_argument("--list", action="store_true", help="list registered models, datasets and pruners")


def _info(args: argparse.Namespace) -> int:
    from harness.data import DATASETS, dataset_shape
    from harness.flops import count_cost
    from harness.models import MODELS, build_model, check_input_size

    if args.list or not args.model:
        print("models:   " + ", ".join(MODELS.names()))
        print("datasets: " + ", ".join(DATASETS.names()))
        try:
            from harness.pruners import PRUNERS, load_builtin_pruners

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
DEFAULT_STEP_SCALE = {"flops": 1.0, "ratio": 0.1}


def str_tuple(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_pruning_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pruning schedule (defaults: the authors' recipe for the model family)")
    g.add_argument("--pruner", required=True, help="registered pruner (run_bench.py info --list)")
    g.add_argument("--plugin", action="append", default=[], help="a .py file or module that registers pruners")
    g.add_argument("--target-flops", type=float, help="FLOPs reduction to reach, e.g. 0.55")
    g.add_argument("--prune-epoch", type=int, help="epochs of training before pruning starts")
    g.add_argument("--recover-epoch", type=int, help="LAASP: epochs of each recovery")
    g.add_argument("--recover-flop", type=float, help="LAASP: FLOPs reduction between recoveries")
    g.add_argument("--step-rule", choices=("flops", "ratio"), help="LAASP: step size rule")
    g.add_argument("--step-scale", type=float, help="LAASP: %% of baseline FLOPs (flops rule) or filter fraction (ratio rule)")
    g.add_argument("--max-prune-rate", type=float, help="per-layer cap on the pruned fraction")
    g.add_argument("--subset-size", type=int, help="LAASP: training images in the loss subset")
    g.add_argument("--criteria", type=str_tuple, help="LAASP: criteria pool, e.g. l1,l2,eucl,cos")
    g.add_argument("--selection", choices=("exact", "approx"), help="LAASP: exact (default) or successive halving")
    g.add_argument("--approx-start-fraction", type=float, help="LAASP approx: first round's share of the subset")
    g.add_argument("--approx-check", action="store_true", default=None,
                   help="LAASP: also run the other selection (approx with exact, exact with approx) each step "
                        "and record how often the picks agree; the --selection one is applied")
    g.add_argument("--chunk-size", type=int, help="LAASP: subset images per pass when scoring candidates")
    g.add_argument("--candidate-batch", type=int, help="LAASP: rows per forward when candidates are stacked")
    g.add_argument("--from-checkpoint", metavar="PATH",
                   help="three-stage mode: prune this trained checkpoint.pt at once, then fine-tune --epochs")
    g.add_argument("--epoch-budget", type=int, help="train exactly N epochs in all (extra ones after pruning)")
    g.add_argument("--match-epochs", metavar="RECORD",
                   help="same total epoch budget as that run's record.json (e.g. a LAASP run, recovery included)")


PRUNING_OPTIONS = ("target_flops", "prune_epoch", "recover_epoch", "recover_flop", "step_rule", "step_scale",
                   "max_prune_rate", "subset_size", "criteria", "selection", "approx_start_fraction",
                   "approx_check", "chunk_size", "candidate_batch")


def pruner_config_from_args(args: argparse.Namespace):
    from harness.models import MODELS
    from harness.pruners import PRUNERS, build_pruner_config, load_builtin_pruners, load_plugin, unused_options
    from harness.recipes import recipe_for

    load_builtin_pruners()
    for plugin in args.plugin:
        load_plugin(plugin)
    PRUNERS.get(args.pruner)  # unknown pruner: the message lists the registered ones
    recipe = recipe_for(MODELS.meta(args.model)["family"])
    options = {k: getattr(args, k) for k in PRUNING_OPTIONS}
    if options["step_rule"] not in (None, recipe.step_rule) and options["step_scale"] is None:
        options["step_scale"] = DEFAULT_STEP_SCALE[options["step_rule"]]
    if args.from_checkpoint and options["prune_epoch"] is None:
        options["prune_epoch"] = 0
    elif args.epochs is not None and options["prune_epoch"] is None:
        # a shortened run keeps the recipe's proportion of training before pruning
        options["prune_epoch"] = round(recipe.prune_epoch * args.epochs / recipe.epochs)
    ignored = unused_options(args.pruner, options)
    if ignored:
        print(f"note: {args.pruner} does not use {', '.join('--' + k.replace('_', '-') for k in ignored)}",
              file=sys.stderr)
    return build_pruner_config(args.pruner, options, recipe)


def _run_parser(p: argparse.ArgumentParser) -> None:
    add_train_args(p)
    add_pruning_args(p)
    add_data_args(p)


def _run(args: argparse.Namespace) -> int:
    from harness.job import run_job

    cfg = job_config_from_args(args, pruner_config=pruner_config_from_args(args))
    record = run_job(cfg, state_path=state_path(cfg))
    print(result_line(record))
    return 0


command("run", "train with a pruner: train, prune to --target-flops, train to --epochs")((_run_parser, _run))

# ---------------------------------------------------------------- sweep (harness/sweep/)
from harness.sweep.cli import add_sweep_args, sweep_main  # noqa: E402

command("sweep", "run a search space of trials (Ray Tune or serial) or --resume one")((add_sweep_args, sweep_main))


# ---------------------------------------------------------------- table / report
from harness.results_cli import (add_plots_args, add_report_args, add_table_args, plots_main,  # noqa: E402
                                 report_main, table_main)

command("table", "comparison table of a results folder (md, csv or latex), computed from its records")(
    (add_table_args, table_main))
command("report", "self-contained HTML report of a results folder: table, figures, how the numbers were made")(
    (add_report_args, report_main))
command("plots", "the report's figures as files (png, pdf or svg) in <folder>/plots/")((add_plots_args, plots_main))


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_bench.py", description="LAASP pruning benchmark harness")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS.names():
        configure, _ = COMMANDS.get(name)
        configure(sub.add_parser(name, help=COMMANDS.meta(name)["help"]))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _, run = COMMANDS.get(args.command)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"error: training diverged ({exc}); lower --lr or check the data", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        hint = f"; rerun the same command to resume from {out}/state.pt" if out else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
