"""The options of one run, in one typed table, and how a set of them becomes a `JobConfig`.

Both edges read this table: the CLI builds its flags from it (``--target-flops`` is option
``target_flops``), and a search-space YAML is checked against it (types, choices, file paths).
So a trial in a sweep and the same command line give the same config, through the same code:
`job_config_from_options`. Unset options take the model family's recipe (`harness.train.recipes`).

Why not pydantic: the checks here are the coercion of one table of ~60 options by eight kinds
(`harness.sweep.options.coerce_option`) plus cross-field rules that need the model and data
(`JobConfig.validate`, a pruner's ``Config.validate``). A pydantic model would have to repeat
this table as a second declaration, its errors carry no YAML line (the ``file:line`` comes from
`harness.sweep.yaml_lines`) and need rewording into one ``error:`` line naming the fix, and the
cross-field rules would stay hand-written: more code and a dependency for the same messages.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from harness.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # harness.train.device.PRECISIONS; no torch import to build flags

OptionKind = str  # int | float | str | bool | int_list | float_list | str_tuple | list


# A scratch run (`harness.job.scratch`) takes these options from its source run unless given
# (option -> path in the source's config); the epoch options are refused (its budget sets them).
SCRATCH_INHERITED = {"dataset": ("data", "dataset"), "data_root": ("data", "data_root"),
                     "train_subset": ("data", "train_subset"), "test_subset": ("data", "test_subset"),
                     "subset_seed": ("data", "subset_seed"), "lr": ("optim", "lr"),
                     "momentum": ("optim", "momentum"), "weight_decay": ("optim", "weight_decay"),
                     "gamma": ("optim", "gamma"), "batch_size": ("optim", "batch_size"), "seed": ("seed",)}
SCRATCH_EPOCH_OPTIONS = ("epochs", "epoch_budget", "match_epochs", "budget_epoch")


@dataclass(frozen=True)
class Option:
    name: str                     # the config key; the flag is --name-with-dashes
    kind: OptionKind
    group: str                    # data | training | pruning | output
    help: str | None = None
    default: Any = None
    choices: tuple[str, ...] | None = None
    required: bool = False        # on the command line
    path: bool = False            # names a file or folder (relative to a YAML file's folder there)
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def parse_int_list(text: str) -> tuple[int, ...]:
    """``"60,120"`` -> ``(60, 120)``; ValueError names the bad text."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def parse_float_list(text: str) -> tuple[float, ...]:
    """``"0.6,0.3,0.1"`` -> ``(0.6, 0.3, 0.1)``; ValueError names the bad text."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


def parse_str_tuple(text: str) -> tuple[str, ...]:
    """``"l1,l2"`` -> ``("l1", "l2")``."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


_DATA = (
    Option("dataset", "str", "data", "digits (embedded, default), cifar10, cifar100, imagenet, imagefolder",
           default="digits"),
    Option("data_root", "str", "data", "dataset folder (or a .zip of an ImageFolder tree)", path=True),
    Option("train_subset", "int", "data", "use a fixed random subset of N training images"),
    Option("test_subset", "int", "data", "use a fixed random subset of N test images"),
    Option("subset_seed", "int", "data", "seed of the subsets (same for every run seed)", default=0),
    Option("download", "bool", "data", "CIFAR only: download into --data-root when missing", default=False),
    Option("loader_workers", "int", "data", "DataLoader worker processes (per training process) for ImageNet-size "
           "data (called --workers before --workers became the process count)", default=4),
    Option("decoder", "str", "data", "ImageNet-size data: torchvision (file bytes decoded by torchvision.io, on the "
           "GPU when there is one, crop/flip/normalize on whole batches; default, measured faster) or pil (the "
           "per-image PIL transforms)", default="torchvision", choices=("torchvision", "pil")),
)
_TRAINING = (
    Option("model", "str", "training", "registered model name (run_bench.py info --list)", required=True),
    Option("epochs", "int", "training", "total schedule epochs"),
    Option("lr", "float", "training"),
    Option("batch_size", "int", "training"),
    Option("weight_decay", "float", "training"),
    Option("momentum", "float", "training", default=0.9),
    Option("milestones", "int_list", "training", "epochs where lr *= gamma (default: the recipe's, scaled to --epochs)"),
    Option("gamma", "float", "training"),
    Option("seed", "int", "training", default=0),
    Option("weights", "str", "training",
           "start from pretrained ImageNet weights: a torchvision state_dict FILE, or torchvision (its "
           "IMAGENET1K_V1 weights from the torch hub cache; torchvision:NAME for another); ImageNet models only; "
           "with a pruner the pretrained network is pruned at once (prune epoch 0) unless --prune-epoch says",
           path=True, metavar="FILE|torchvision"),
    Option("workers", "int", "training", "data-parallel training processes of this run (torch.distributed: NCCL, one "
           "GPU each, on CUDA; gloo on CPU); the batch size stays the global batch, split evenly across them",
           default=1),
    Option("device", "str", "training", "auto (CUDA if present), cpu, cuda, cuda:N", default="auto"),
    Option("precision", "str", "training", "arithmetic of training and evaluation: auto (bf16 on GPUs with native "
           "bf16, else fp16 with a gradient scaler; fp32 on CPU), fp32 (true fp32, TF32 off), bf16, fp16",
           default="auto", choices=PRECISIONS),
    Option("no_amp", "bool", "training", "same as --precision fp32", default=False),
    Option("compile", "bool", "training",
           "torch.compile the training step in the epochs after the last structural change (an unpruned run: all of "
           "them); off by default: on this project's CPU it measured slower than eager (README, Benchmarks)",
           default=False),
    Option("deterministic", "bool", "training",
           "CUDA: deterministic cuDNN kernels and algorithms, no autotuning (slower; see README, Reproducibility)",
           default=False),
    # Budgets apply to unpruned runs too, so a table's drop is not an artefact of fewer epochs.
    Option("epoch_budget", "int", "training", "train exactly N epochs in all: a pruned run adds the extra ones "
           "after pruning, an unpruned one after --budget-epoch"),
    Option("match_epochs", "str", "training",
           "same total epoch budget as that run's record.json (e.g. a LAASP run, recovery included)",
           path=True, metavar="RECORD"),
    Option("budget_epoch", "int", "training", "unpruned runs with a budget: the schedule epoch at which the extra "
           "epochs are trained, at its learning rate (default: the matched record's prune epoch, else the "
           "recipe's prune epoch for --epochs)"),
)
_OUTPUT = (
    Option("out", "str", "output", "folder for record.json and checkpoint.pt", path=True),
    Option("quiet", "bool", "output", "no progress bars or per-epoch lines", default=False),
)
_PRUNING = (
    Option("pruner", "str", "pruning", "registered pruner (run_bench.py info --list)", required=True),
    Option("plugin", "list", "pruning", "a .py file or module that registers pruners", default=()),
    Option("target_flops", "float", "pruning", "FLOPs reduction to reach, e.g. 0.55"),
    Option("prune_epoch", "int", "pruning", "epochs of training before pruning starts"),
    Option("schedule", "str", "pruning", "one-shot baselines (l1_uniform, gm_uniform, random, l1_global, pfec, "
           "hrank, slimming): prune at once (oneshot, default) or in LAASP's FLOPs steps with its recovery "
           "(iterative: --step-scale, --recover-flop, --recover-epoch, --recover-lr; README, Baselines)",
           choices=("oneshot", "iterative")),
    Option("recover_epoch", "int", "pruning", "LAASP, --schedule iterative: epochs of each recovery"),
    Option("recover_flop", "float", "pruning", "LAASP, --schedule iterative: FLOPs reduction between recoveries"),
    Option("step_rule", "str", "pruning", "LAASP: step size rule (--schedule iterative: flops only)",
           choices=("flops", "ratio")),
    Option("step_scale", "float", "pruning",
           "LAASP, --schedule iterative: %% of baseline FLOPs (flops rule) or filter fraction (ratio rule)"),
    Option("max_prune_rate", "float", "pruning", "per-layer cap on the pruned fraction"),
    Option("subset_size", "int", "pruning", "LAASP: training images in the loss subset"),
    Option("criteria", "str_tuple", "pruning", "LAASP: criteria pool, e.g. l1,l2,eucl,cos"),
    Option("selection", "str", "pruning", "LAASP: exact (default) or approximate (a race over candidates)",
           choices=("exact", "approx")),
    Option("approx_start_fraction", "float", "pruning",
           "LAASP approx: first round's share of the subset (default: its first 800 images)"),
    Option("approx_eta", "int", "pruning", "LAASP approx: keep 1/eta of the candidates per round (default 2)"),
    Option("approx_confidence", "float", "pruning",
           "LAASP approx: also drop candidates clearly worse than the leader at this one-sided level, e.g. 0.99"),
    Option("approx_precision", "str", "pruning",
           "LAASP approx: the race's forwards: fp32 (default) or bf16 (a race about 2x faster on a CPU "
           "with AVX512-BF16; exact selection stays fp32)", choices=("fp32", "bf16")),
    Option("approx_check", "bool", "pruning",
           "LAASP: also run the other selection (approx with exact, exact with approx) each step "
           "and record how often the picks agree; the --selection one is applied"),
    Option("chunk_size", "int", "pruning", "LAASP: subset images per pass when scoring candidates"),
    Option("candidate_batch", "int", "pruning", "LAASP: rows per forward when candidates are stacked"),
    Option("recover_lr", "str", "pruning", "LAASP, --schedule iterative: recovery epoch k at the schedule's rate "
           "of prune_epoch + k (schedule, the authors' scripts, default) or all at the rate of prune_epoch (the rule "
           "of older records)",
           choices=("schedule", "prune_epoch")),
    Option("subset_policy", "str", "pruning", "LAASP: loss subset drawn from the whole training set (random, "
           "default) or from its first 149,999 images as the authors' scripts do (authors)",
           choices=("random", "authors")),
    # the published baselines' own settings (README: "Baselines"); unset: each paper's default
    Option("rates", "float_list", "pruning",
           "pfec/sfp/fpgm/hrank: hand-set pruned fractions instead of --target-flops: one value, one per stage, "
           "or one per prunable layer group", metavar="R[,R...]"),
    Option("preset", "str", "pruning", "pfec: the paper's rates and skipped layers (resnet56-A, resnet56-B, vgg16-A)"),
    Option("skip_layers", "str_tuple", "pruning", "pfec: layers left unpruned (the paper's sensitive layers)",
           metavar="NAME[,NAME...]"),
    Option("norm_share", "float", "pruning", "fpgm: share of each layer's pruned filters chosen by L2 norm (0)"),
    Option("reg", "float", "pruning",
           "slimming: L1 strength on BN scales (1e-4 VGG, 1e-5 ResNets); depgraph: group sparsity (5e-4)"),
    Option("rank_images", "int", "pruning", "hrank: training images whose feature-map ranks are averaged (500)"),
    Option("frequency", "int", "pruning", "taylor: training minibatches between pruning iterations (30)"),
    Option("prune_iterations", "int", "pruning", "taylor: pruning iterations to reach the target (32)"),
    Option("iterative_steps", "int", "pruning", "depgraph/lamp/tp:*: torch-pruning's iterative steps (400)"),
    Option("global_ranking", "bool", "pruning", "tp:*: one ranking across layers (default: a uniform ratio)"),
    Option("from_checkpoint", "str", "pruning",
           "three-stage mode: prune this trained checkpoint.pt at once, then fine-tune --epochs",
           path=True, metavar="PATH"),
)

OPTIONS: dict[str, Option] = {o.name: o for o in (*_DATA, *_TRAINING, *_OUTPUT, *_PRUNING)}
GROUPS = {"data": _DATA, "training": _TRAINING, "output": _OUTPUT, "pruning": _PRUNING}
# Options a pruner's Config reads (by field name); the others describe the run itself.
PRUNING_OPTIONS = ("target_flops", "prune_epoch", "schedule", "recover_epoch", "recover_flop", "step_rule", "step_scale",
                   "max_prune_rate", "subset_size", "criteria", "selection", "approx_start_fraction",
                   "approx_eta", "approx_confidence", "approx_precision", "approx_check", "chunk_size", "candidate_batch", "recover_lr",
                   "subset_policy", "rates", "preset", "skip_layers", "norm_share", "reg", "rank_images", "frequency",
                   "prune_iterations", "iterative_steps", "global_ranking")
DEFAULT_STEP_SCALE = {"flops": 1.0, "ratio": 0.1}


def run_options(pruned: bool) -> tuple[Option, ...]:
    """The options of a ``train`` (unpruned) or ``run`` (pruned) command."""
    groups = ("training", "output", "pruning", "data") if pruned else ("training", "output", "data")
    return tuple(o for g in groups for o in GROUPS[g])


def defaults(pruned: bool) -> dict[str, Any]:
    return {o.name: o.default for o in run_options(pruned)}


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def default_prune_epoch(recipe: Any, epochs: int | None) -> int:
    """The recipe's prune epoch; a shortened run keeps the recipe's share of training before it."""
    return recipe.prune_epoch if epochs is None else round(recipe.prune_epoch * epochs / recipe.epochs)


def job_config_from_options(options: Mapping[str, Any], pruner_config: Any = None, scratch: Any = None):
    """Options (CLI flags or a trial's YAML options, unset ones None) -> a validated `JobConfig`;
    ``scratch``: a `harness.job.scratch.ScratchSpec` (`scratch_job_config` builds both)."""
    from harness.data import DataConfig
    from harness.job.config import JobConfig, epochs_of_record, prune_epoch_of_record
    from harness.models import MODELS
    from harness.train.engine import OptimConfig
    from harness.train.recipes import recipe_for

    opts = {**defaults(pruner_config is not None), **{k: v for k, v in options.items() if v is not None}}
    recipe = recipe_for(MODELS.meta(opts["model"])["family"])
    epochs = _pick(opts.get("epochs"), recipe.epochs)
    if epochs < 1:
        raise UserError(f"--epochs must be >= 1 (got {epochs})")
    if opts.get("milestones") is not None:
        _check_milestones(tuple(opts["milestones"]), epochs)
    optim = OptimConfig(
        lr=_pick(opts.get("lr"), recipe.lr), momentum=opts["momentum"],
        weight_decay=_pick(opts.get("weight_decay"), recipe.weight_decay),
        milestones=opts["milestones"] if opts.get("milestones") is not None else recipe.milestones(epochs),
        gamma=_pick(opts.get("gamma"), recipe.gamma), batch_size=_pick(opts.get("batch_size"), recipe.batch_size),
    )
    data = DataConfig(dataset=opts["dataset"], data_root=opts.get("data_root"), train_subset=opts.get("train_subset"),
                      test_subset=opts.get("test_subset"), subset_seed=opts["subset_seed"], download=opts["download"],
                      loader_workers=opts["loader_workers"], decoder=opts["decoder"])
    budget, budget_epoch = opts.get("epoch_budget"), opts.get("budget_epoch")
    if opts.get("match_epochs"):
        budget = epochs_of_record(opts["match_epochs"])
        if pruner_config is None and budget_epoch is None:
            budget_epoch = prune_epoch_of_record(opts["match_epochs"])
    if pruner_config is None and budget is not None and budget_epoch is None:
        budget_epoch = default_prune_epoch(recipe, epochs)  # where a pruned run of the recipe adds its epochs
    cfg = JobConfig(model=opts["model"], data=data, optim=optim, epochs=epochs, seed=opts["seed"],
                    device=opts["device"], precision=_precision(opts), deterministic=opts["deterministic"],
                    compile=opts["compile"], workers=opts["workers"],
                    out=opts.get("out"), progress=not opts["quiet"],
                    pruner=opts.get("pruner"), pruner_config=pruner_config,
                    init_checkpoint=opts.get("from_checkpoint"), weights=opts.get("weights"),
                    epoch_budget=budget, budget_epoch=budget_epoch, scratch=scratch)
    cfg.validate()
    return cfg


def _precision(opts: Mapping[str, Any]) -> str:
    """--precision, with --no-amp kept as its old spelling of fp32."""
    precision = opts["precision"]
    if opts["no_amp"]:
        if precision not in ("auto", "fp32"):
            raise UserError(f"--no-amp means --precision fp32, which contradicts --precision {precision}; pass one")
        precision = "fp32"
    return precision


def _check_milestones(milestones: tuple[int, ...], epochs: int) -> None:
    """Milestones the user gave: each must fall inside the run, once (the recipe's are scaled to fit)."""
    late = [m for m in milestones if m >= epochs]
    if late:
        raise UserError(f"--milestones {','.join(map(str, milestones))}: {','.join(map(str, late))} is not before the "
                        f"last epoch (--epochs {epochs}), so the learning rate would never drop there; give epochs "
                        f"below {epochs} or raise --epochs")
    if len(set(milestones)) != len(milestones):
        raise UserError(f"--milestones {','.join(map(str, milestones))} lists an epoch twice (the rate would drop "
                        "twice at once); list each epoch once, or change --gamma")


def _check_schedule(pruner: str, schedule: str | None) -> None:
    """``--schedule iterative`` is for the pruners whose Config has a schedule (the one-shot baselines)."""
    import dataclasses

    from harness.prune.pruner import PRUNERS

    def has_schedule(name: str) -> bool:
        return "schedule" in {f.name for f in dataclasses.fields(PRUNERS.get(name).Config)}

    if schedule in (None, "oneshot") or has_schedule(pruner):
        return
    takers = [name for name in PRUNERS.names() if not name.startswith("tp:") and has_schedule(name)]
    raise UserError(f"--schedule {schedule}: {pruner} has its own schedule; the iterative schedule is for the "
                    f"one-shot baselines ({', '.join(takers)}); drop --schedule or pick one of them")


def pruner_config_from_options(options: Mapping[str, Any], note: Callable[[str], None] | None = None):
    """The chosen pruner's typed Config: its fields from the options, unset ones from the recipe.

    Options the pruner does not read are reported through ``note`` (default: stderr), not dropped silently.
    """
    from harness.models import MODELS
    from harness.prune.plugins import load_builtin_pruners, load_plugin
    from harness.prune.pruner import PRUNERS, build_pruner_config, unused_options
    from harness.train.recipes import recipe_for

    load_builtin_pruners()
    for plugin in options.get("plugin") or ():
        load_plugin(plugin)
    pruner = options["pruner"]
    PRUNERS.get(pruner)  # unknown pruner: the message lists the registered ones
    _check_schedule(pruner, options.get("schedule"))
    recipe = recipe_for(MODELS.meta(options["model"])["family"])
    values = {k: options.get(k) for k in PRUNING_OPTIONS}
    if values["step_rule"] not in (None, recipe.step_rule) and values["step_scale"] is None:
        values["step_scale"] = DEFAULT_STEP_SCALE[values["step_rule"]]
    if (options.get("from_checkpoint") or options.get("weights")) and values["prune_epoch"] is None:
        values["prune_epoch"] = 0
    elif (options.get("epochs") is not None and values["prune_epoch"] is None
          and "prune_epoch" not in getattr(PRUNERS.get(pruner).Config, "OWN_DEFAULTS", ())):
        values["prune_epoch"] = default_prune_epoch(recipe, options["epochs"])
    ignored = unused_options(pruner, values)
    if ignored:
        message = f"note: {pruner} does not use {', '.join('--' + k.replace('_', '-') for k in ignored)}"
        (note or (lambda line: print(line, file=sys.stderr)))(message)
    return build_pruner_config(pruner, values, recipe)
