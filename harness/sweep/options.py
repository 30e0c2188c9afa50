"""Trial options as a search space writes them, checked and coerced against the run options
table (`harness.job.options`): the same types, choices and paths as the command line's flags."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from harness.job.options import PRUNING_OPTIONS, Option, parse_float_list, parse_int_list, run_options
from harness.sweep.yaml_lines import _did_you_mean, _kind, _line, _Located

MATCH_LAASP = "laasp"  # epoch_budget: laasp
# arch_from: <pruner> + scratch: E|B: a scratch trial trains the final architecture of its twin of
# that pruner (harness.job.scratch). Not run options: the trial's source is found when it starts.
SCRATCH_KEYS = ("arch_from", "scratch")
# What a scratch trial keeps only to find its twin (same values); its own run never reads them.
SCRATCH_MATCH_ONLY = ("target_flops", "prune_epoch", "from_checkpoint", "weights")
EXCLUDED_OPTIONS = {"out", "quiet", "plugin", "match_epochs", "seed", "workers"}
UNPRUNED_NAMES = (None, "none", "unpruned")
PRUNED_ONLY = ("from_checkpoint",)  # run options (beside the pruning ones) only a pruned trial reads
UNPRUNED_ONLY = ("budget_epoch",)   # ... only an unpruned trial reads (epoch_budget applies to both)


def trial_options() -> dict[str, Option]:
    """The options a trial may set: the ``run`` command's, minus output ones."""
    return {o.name: o for o in run_options(pruned=True) if o.name not in EXCLUDED_OPTIONS}


def pruning_options() -> tuple[str, ...]:
    return PRUNING_OPTIONS


def pruner_fields(pruner: str) -> frozenset[str]:
    from harness.prune.pruner import PRUNERS

    return frozenset(f.name for f in dataclasses.fields(PRUNERS.get(pruner).Config))


def idle_fields(pruner: str, options: dict[str, Any] | None) -> frozenset[str]:
    """Fields of the pruner's Config that it does not read with these ``options`` (its Config's
    ``idle_options``: a one-shot baseline's iterative settings unless ``schedule: iterative``)."""
    from harness.prune.plugins import load_builtin_pruners
    from harness.prune.pruner import PRUNERS

    load_builtin_pruners()
    config = PRUNERS.get(pruner).Config
    return frozenset(config.idle_options(options or {})) if hasattr(config, "idle_options") else frozenset()


def uses(pruner: str | None, key: str, options: dict[str, Any] | None = None) -> bool:
    """Whether a trial of ``pruner`` (None: unpruned) with ``options`` reads option ``key``."""
    if key in ("pruner", "seed"):
        return True
    if key in SCRATCH_KEYS:
        return pruner is None
    if pruner is None:
        return key not in pruning_options() and key not in PRUNED_ONLY
    if key in UNPRUNED_ONLY:
        return False
    return key not in pruning_options() or (key in pruner_fields(pruner) and key not in idle_fields(pruner, options))


def for_pruner(options: dict[str, Any]) -> dict[str, Any]:
    """Drop the options the trial's pruner does not read (conditional parameters per pruner)."""
    pruner = options.get("pruner")
    if options.get("arch_from") is not None or options.get("scratch") is not None:
        return _for_scratch(options)
    out = {k: v for k, v in options.items() if uses(pruner, k, options)}
    if pruner == "laasp" and out.get("epoch_budget") == MATCH_LAASP:
        del out["epoch_budget"]  # LAASP's own count is the budget the others match
    return out


def _for_scratch(options: dict[str, Any]) -> dict[str, Any]:
    """A scratch trial's options: an unpruned run's, plus what finds its twin; no epoch budget
    (its epochs come from the twin)."""
    from harness.errors import UserError

    if options.get("pruner") is not None:
        raise UserError(f"a grid trial has arch_from {options.get('arch_from')} and pruner {options['pruner']}: "
                        "arch_from makes a scratch trial, which prunes nothing; put arch_from and scratch in a grid "
                        "block of their own, without a pruner")
    if options.get("arch_from") is None or options.get("scratch") is None:
        raise UserError("a scratch trial needs both arch_from: <pruner> (whose twin's architecture it trains) and "
                        "scratch: E, B or [E, B]")
    return {k: v for k, v in options.items()
            if (uses(None, k) or k in SCRATCH_MATCH_ONLY) and k not in ("epoch_budget", "budget_epoch")}


def coerce_option(key: str, value: Any, line: int, base_dir: Path | None) -> Any:
    """A YAML value for option ``key`` as the CLI would have parsed it; _Located on a bad one."""
    actions = trial_options()
    if key == "seed":
        raise _Located(line, "set seeds with the top-level 'seeds' list, not 'seed'")
    if key in SCRATCH_KEYS:
        return _coerce_scratch(key, value, line)
    if key == "workers":
        raise _Located(line, "a trial's data-parallel processes are a resource of the sweep: pass --workers-per-trial "
                             "N to `run_bench.py sweep` (Tune then reserves --cpus-per-trial/--gpus-per-trial for "
                             "all N), not 'workers' in the space file")
    if key not in actions:
        names = sorted([*actions, *SCRATCH_KEYS])
        raise _Located(line, f"unknown option {key!r}{_did_you_mean(key, names)}; options are the flags of "
                             f"`run_bench.py run` with '_' for '-': {', '.join(names)}")
    option = actions[key]
    if key == "pruner":
        if value in UNPRUNED_NAMES:
            return None
        if not isinstance(value, str):
            raise _Located(line, f"pruner must be a registered pruner name or none (got {_kind(value)})")
        from harness.prune.plugins import load_builtin_pruners
        from harness.prune.pruner import PRUNERS

        load_builtin_pruners()
        if value not in PRUNERS:
            raise _Located(line, f"unknown pruner {value!r}; registered: {', '.join(PRUNERS.names())} "
                                 "(or none for the unpruned baseline; plugins: add them under 'plugins')")
        return value
    if key == "epoch_budget" and value == MATCH_LAASP:
        return MATCH_LAASP
    if key == "epoch_budget" and value in (None, "none"):
        return None  # no budget, e.g. in a grid block, over a fixed epoch_budget (its old unpruned rule)
    if option.kind == "bool":
        if not isinstance(value, bool):
            raise _Located(line, f"{key} must be true or false (got {_kind(value)})")
        return value
    kind = option.kind
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Located(line, f"{key} must be an integer (got {_kind(value)})")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Located(line, f"{key} must be a number (got {_kind(value)})")
        return float(value)
    if kind == "int_list":
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        if isinstance(value, str):
            try:
                return parse_int_list(value)
            except ValueError as exc:
                raise _Located(line, f"{key}: {exc}") from None
        raise _Located(line, f"{key} must be a list of integers (got {_kind(value)})")
    if kind == "float_list":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (float(value),)
        if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return tuple(float(v) for v in value)
        if isinstance(value, str):
            try:
                return parse_float_list(value)
            except ValueError as exc:
                raise _Located(line, f"{key}: {exc}") from None
        raise _Located(line, f"{key} must be a list of numbers (got {_kind(value)})")
    if kind == "str_tuple":
        if isinstance(value, str):
            items = tuple(v.strip() for v in re.split(r"[,+]", value) if v.strip())
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = tuple(value)
        else:
            raise _Located(line, f"{key} must be a list of names or a string like 'l1+eucl' (got {_kind(value)})")
        if key == "criteria":
            _check_criteria(items, line)
        return items
    if not isinstance(value, str):
        raise _Located(line, f"{key} must be a string (got {_kind(value)})")
    if option.choices and value not in option.choices:
        raise _Located(line, f"{key} must be one of {', '.join(option.choices)} (got {value!r})")
    if key == "model":
        from harness.models import MODELS

        if value not in MODELS:
            raise _Located(line, f"unknown model {value!r}; registered: {', '.join(MODELS.names())}")
    if key == "dataset":
        from harness.data import DATASETS

        if value not in DATASETS:
            raise _Located(line, f"unknown dataset {value!r}; registered: {', '.join(DATASETS.names())}")
    if _is_file(key, value, actions) and base_dir is not None:
        value = str((base_dir / Path(value).expanduser()).resolve())
    return value


def _coerce_scratch(key: str, value: Any, line: int) -> str:
    if key == "scratch":
        if value not in ("E", "B"):
            raise _Located(line, f"scratch must be E (the source's epochs) or B (the unpruned network's compute), "
                                 f"or a list [E, B] (got {value!r})")
        return value
    from harness.prune.plugins import load_builtin_pruners
    from harness.prune.pruner import PRUNERS

    load_builtin_pruners()
    if not isinstance(value, str) or value not in PRUNERS:
        raise _Located(line, f"arch_from must name the pruner whose twin trial's architecture a scratch trial "
                             f"trains, one of {', '.join(PRUNERS.names())} (got {value!r})")
    return value


def _is_file(key: str, value: Any, table: dict[str, Option]) -> bool:
    """Whether an option's value names a file (``weights: torchvision`` names the hub cache instead)."""
    from harness.models.pretrained import is_hub

    return key in table and table[key].path and isinstance(value, str) and not (key == "weights" and is_hub(value))


def portable_options(options: dict[str, Any]) -> dict[str, Any]:
    """Trial options as records and sweep.json hold them: file options relative to the repository."""
    from harness.job.records import portable_path

    table = trial_options()
    return {k: portable_path(v) if _is_file(k, v, table) else v for k, v in options.items()}


def resolved_options(options: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `portable_options`: file options as paths of this machine."""
    from harness.job.records import resolve_path

    table = trial_options()
    return {k: str(resolve_path(v)) if _is_file(k, v, table) else v for k, v in options.items()}


def _check_criteria(items: tuple[str, ...], line: int) -> None:
    from harness.prune.criteria import CRITERIA

    if not items:
        raise _Located(line, f"the criteria pool is empty; give a non-empty subset of {', '.join(CRITERIA.names())}")
    for name in items:
        if name not in CRITERIA:
            raise _Located(line, f"unknown criterion {name!r}; registered: {', '.join(CRITERIA.names())}")
    if len(set(items)) != len(items):
        raise _Located(line, f"the criteria pool lists a criterion twice: {'+'.join(items)}")


def _options(mapping: Any, where: str, line: int, base_dir: Path | None) -> dict[str, Any]:
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise _Located(line, f"{where} must be a mapping of options (got {_kind(mapping)})")
    return {k: coerce_option(k, v, _line(mapping, k), base_dir) for k, v in mapping.items()}
