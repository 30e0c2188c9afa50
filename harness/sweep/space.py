"""Search-space YAML files: schema, validation (errors name the key and its line), trial plans.

A space file describes either a **grid** (every combination of some options, for every seed)
or an Optuna **search**. Options are the flags of ``run_bench.py run`` spelled with
underscores (``target_flops``, ``recover_epoch``, ``max_prune_rate``, ``criteria``, ...);
each trial's options become a `JobConfig` through the CLI's own code
(`harness.cli.job_config_from_args`), so recipe defaults and validation are identical.

Top-level keys::

    description: free text
    plugins: [path/to/my_pruner.py]      # files or modules that register pruners
    fixed: {model: resnet20, dataset: digits, epochs: 8, ...}   # options of every trial
    pruners:                              # options sent only to that pruner's trials
      laasp: {recover_epoch: 1, subset_size: 256}
    seeds: [0, 1, 2]                      # or a count: 3 -> [0, 1, 2]
    grid:                                 # a mapping, or a list of mappings (union of blocks)
      pruner: [none, laasp, l1_uniform]   #   a list is an axis, a scalar is fixed in the block
      target_flops: [0.3, 0.5]
    search:                               # instead of grid: Optuna (see `parse_search`)
      objective: top1                     #   or [top1, flops_reduction] (Pareto front)
      num_samples: 30
      space: {criteria: {subset: [l1, l2, eucl, cos]}, step_scale: {low: 0.5, high: 2.0}}

Paths in the file (plugins, data_root, from_checkpoint) are relative to the file's folder.
``pruner: none`` (or null) is the unpruned baseline. Options a pruner does not read (e.g.
LAASP's ``recover_epoch`` for ``l1_uniform``) are not sent to it; duplicate trials that
result (the unpruned run at several targets) are planned once. ``epoch_budget: laasp`` gives
every non-LAASP pruned trial the total epochs its LAASP twin (same options and seed)
actually trained, recovery included: those trials run in a second stage.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from harness.errors import UserError

# ----------------------------------------------------------------------------- YAML with lines

TOP_KEYS = ("description", "plugins", "fixed", "pruners", "seeds", "grid", "search")
SEARCH_KEYS = ("objective", "num_samples", "sampler", "sampler_seed", "asha", "repeat", "space")
ASHA_KEYS = ("grace_period", "reduction_factor", "max_t")
REPEAT_KEYS = ("top", "seeds")
PARAM_FORMS = ("choice", "low", "subset")
PARAM_KEYS = {"choice": ("choice", "when"), "low": ("low", "high", "log", "step"),
              "subset": ("subset", "encoding")}
SAMPLERS = ("tpe", "random", "nsga2")
# metric name -> Optuna direction; these are also the keys of every Tune report
METRICS = {"top1": "maximize", "top5": "maximize", "loss": "minimize", "flops_reduction": "maximize",
           "params_reduction": "maximize"}
MATCH_LAASP = "laasp"  # epoch_budget: laasp


class LineDict(dict):
    """A YAML mapping that remembers its own line and each key's line (1-based)."""

    line: int = 0
    lines: dict


class LineList(list):
    line: int = 0
    lines: list


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line, out.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise _Located(line, f"keys must be strings (got {key!r})")
        if key in out:
            raise _Located(line, f"duplicate key {key!r} (first at line {out.lines[key]})")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = line
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line, out.lines = node.start_mark.line + 1, [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


class _Located(Exception):
    """A schema problem at a line; `load_space` turns it into ``UserError("file:line: ...")``."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


def _line(container: Any, key: Any = None) -> int:
    if key is not None and isinstance(container, LineDict) and key in container.lines:
        return container.lines[key]
    if key is not None and isinstance(container, LineList) and isinstance(key, int) and key < len(container.lines):
        return container.lines[key]
    return getattr(container, "line", 0)


def _check_keys(mapping: Any, allowed: Iterable[str], where: str, line: int) -> None:
    if not isinstance(mapping, dict):
        raise _Located(line, f"{where} must be a mapping (got {_kind(mapping)})")
    allowed = list(allowed)
    for key in mapping:
        if key not in allowed:
            raise _Located(_line(mapping, key), f"unknown key {key!r} in {where}{_did_you_mean(key, allowed)}; "
                                                 f"allowed: {', '.join(allowed)}")


def _did_you_mean(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(value: Any) -> str:
    return {dict: "a mapping", LineDict: "a mapping", list: "a list", LineList: "a list"}.get(
        type(value), f"{type(value).__name__} {value!r}")


# ----------------------------------------------------------------------------- options

EXCLUDED_OPTIONS = {"help", "out", "quiet", "plugin", "match_epochs", "seed"}
PATH_OPTIONS = ("data_root", "from_checkpoint")
UNPRUNED_NAMES = (None, "none", "unpruned")


@functools.lru_cache(maxsize=None)
def option_actions() -> dict[str, argparse.Action]:
    """The options a trial may set: the ``run`` command's flags (dest names), minus output ones."""
    from harness.cli import COMMANDS

    parser = argparse.ArgumentParser(add_help=False)
    COMMANDS.get("run")[0](parser)
    return {a.dest: a for a in parser._actions if a.dest not in EXCLUDED_OPTIONS}


def pruning_options() -> tuple[str, ...]:
    from harness.cli import PRUNING_OPTIONS

    return tuple(PRUNING_OPTIONS)


def pruner_fields(pruner: str) -> frozenset[str]:
    from harness.pruners import PRUNERS

    return frozenset(f.name for f in dataclasses.fields(PRUNERS.get(pruner).Config))


def uses(pruner: str | None, key: str) -> bool:
    """Whether a trial of ``pruner`` (None: unpruned) reads option ``key``."""
    if key in ("pruner", "seed"):
        return True
    if pruner is None:
        return key not in pruning_options() and key not in ("epoch_budget", "from_checkpoint")
    return key not in pruning_options() or key in pruner_fields(pruner)


def for_pruner(options: dict[str, Any]) -> dict[str, Any]:
    """Drop the options the trial's pruner does not read (conditional parameters per pruner)."""
    pruner = options.get("pruner")
    out = {k: v for k, v in options.items() if uses(pruner, k)}
    if pruner == "laasp" and out.get("epoch_budget") == MATCH_LAASP:
        del out["epoch_budget"]  # LAASP's own count is the budget the others match
    return out


def coerce_option(key: str, value: Any, line: int, base_dir: Path | None) -> Any:
    """A YAML value for option ``key`` as the CLI would have parsed it; _Located on a bad one."""
    actions = option_actions()
    if key == "seed":
        raise _Located(line, "set seeds with the top-level 'seeds' list, not 'seed'")
    if key not in actions:
        raise _Located(line, f"unknown option {key!r}{_did_you_mean(key, actions)}; options are the flags of "
                             f"`run_bench.py run` with '_' for '-': {', '.join(sorted(actions))}")
    action = actions[key]
    if key == "pruner":
        if value in UNPRUNED_NAMES:
            return None
        if not isinstance(value, str):
            raise _Located(line, f"pruner must be a registered pruner name or none (got {_kind(value)})")
        from harness.pruners import PRUNERS, load_builtin_pruners

        load_builtin_pruners()
        if value not in PRUNERS:
            raise _Located(line, f"unknown pruner {value!r}; registered: {', '.join(PRUNERS.names())} "
                                 "(or none for the unpruned baseline; plugins: add them under 'plugins')")
        return value
    if key == "epoch_budget" and value == MATCH_LAASP:
        return MATCH_LAASP
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise _Located(line, f"{key} must be true or false (got {_kind(value)})")
        return value
    kind = action.type
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Located(line, f"{key} must be an integer (got {_kind(value)})")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Located(line, f"{key} must be a number (got {_kind(value)})")
        return float(value)
    if getattr(kind, "__name__", "") == "int_list":
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        if isinstance(value, str):
            try:
                return kind(value)
            except argparse.ArgumentTypeError as exc:
                raise _Located(line, f"{key}: {exc}") from None
        raise _Located(line, f"{key} must be a list of integers (got {_kind(value)})")
    if getattr(kind, "__name__", "") == "str_tuple":
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
    if action.choices and value not in action.choices:
        raise _Located(line, f"{key} must be one of {', '.join(action.choices)} (got {value!r})")
    if key == "model":
        from harness.models import MODELS

        if value not in MODELS:
            raise _Located(line, f"unknown model {value!r}; registered: {', '.join(MODELS.names())}")
    if key == "dataset":
        from harness.data import DATASETS

        if value not in DATASETS:
            raise _Located(line, f"unknown dataset {value!r}; registered: {', '.join(DATASETS.names())}")
    if key in PATH_OPTIONS and base_dir is not None:
        value = str((base_dir / Path(value).expanduser()).resolve())
    return value


def _check_criteria(items: tuple[str, ...], line: int) -> None:
    from harness.criteria import CRITERIA

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


# ----------------------------------------------------------------------------- the space

@dataclass
class Param:
    """One searched option. ``name`` is the Optuna parameter (unique per distribution)."""

    key: str
    name: str
    kind: str                              # choice | int | float | subset
    choices: list[Any] = field(default_factory=list)   # coerced values (choice)
    labels: list[Any] = field(default_factory=list)    # what Optuna stores (choice)
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    members: tuple[str, ...] = ()          # subset
    encoding: str = "flags"                # subset: flags (one boolean per member) | string ("l1+eucl")
    when: dict[Any, list["Param"]] = field(default_factory=dict)  # choice label -> conditional params


@dataclass
class Search:
    objective: list[str]
    directions: list[str]
    num_samples: int
    sampler: str
    sampler_seed: int
    params: list[Param]
    asha: dict[str, Any] | None
    repeat_top: int
    repeat_seeds: list[int]

    @property
    def multi(self) -> bool:
        return len(self.objective) > 1

    def describe(self) -> dict[str, Any]:
        return {"objective": self.objective if self.multi else self.objective[0], "directions": self.directions,
                "metric_names": self.objective}


@dataclass
class Space:
    path: Path
    base_dir: Path
    description: str
    fixed: dict[str, Any]
    blocks: list[tuple[dict[str, Any], dict[str, list[Any]]]]
    seeds: list[int]
    pruners: dict[str, dict[str, Any]]
    plugins: list[str]
    search: Search | None

    @property
    def kind(self) -> str:
        return "search" if self.search else "grid"


@dataclass
class Trial:
    """One planned run: its record is ``records/<name>.json``, its folder ``trials/<name>/``."""

    name: str
    options: dict[str, Any]
    stage: str = "main"
    budget_from: str | None = None       # trial whose epochs_trained is this trial's epoch_budget
    search: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "options": _jsonable_options(self.options), "stage": self.stage,
                "budget_from": self.budget_from, "search": self.search}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Trial":
        return cls(d["name"], options_from_json(d["options"]), d.get("stage", "main"), d.get("budget_from"),
                   d.get("search"))


def _jsonable_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


def options_from_json(options: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples the configs hold (criteria, milestones)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def load_space(path: str | Path, base_dir: str | Path | None = None, overrides: dict[str, Any] | None = None,
               display: str | None = None) -> Space:
    """Parse and validate a space file; every problem is a `UserError` naming ``file:line``.

    ``overrides`` (e.g. ``{"data_root": ...}`` from ``--data-root``) replace fixed options.
    """
    path = Path(path)
    shown = display or str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read the search space {shown}: {exc.strerror or exc}") from None
    base = Path(base_dir) if base_dir is not None else path.resolve().parent
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
        return _parse(doc, path, base, overrides or {})
    except _Located as exc:
        raise UserError(f"{shown}:{exc.line}: {exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}" if mark is not None else shown
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{where}: not valid YAML ({problem})") from None
    except UserError as exc:
        raise UserError(f"{shown}: {exc}") from None


def _parse(doc: Any, path: Path, base: Path, overrides: dict[str, Any]) -> Space:
    if not isinstance(doc, dict):
        raise _Located(getattr(doc, "line", 1), f"a search space must be a mapping with keys {', '.join(TOP_KEYS)} "
                                                 f"(got {_kind(doc)})")
    _check_keys(doc, TOP_KEYS, "the search space", 1)
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise _Located(_line(doc, "description"), "description must be a string")
    plugins = _plugins(doc.get("plugins"), _line(doc, "plugins"), base)
    fixed = _options(doc.get("fixed"), "fixed", _line(doc, "fixed"), base)
    for key, value in overrides.items():
        if value is not None:
            fixed[key] = value
    seeds = _seeds(doc.get("seeds", [0]), _line(doc, "seeds"), "seeds")
    pruners = _pruner_sections(doc.get("pruners"), _line(doc, "pruners"), base)
    if "grid" in doc and "search" in doc:
        raise _Located(_line(doc, "search"), "a space is a grid or a search, not both: remove 'grid' or 'search' "
                                             "(a search repeats its winners on more seeds with search.repeat)")
    blocks: list[tuple[dict, dict]] = []
    search = None
    if "search" in doc:
        if MATCH_LAASP in [fixed.get("epoch_budget")] + [p.get("epoch_budget") for p in pruners.values()]:
            raise _Located(_line(doc, "search"), "epoch_budget: laasp matches grid trials to their LAASP twin; "
                                                 "a search has none: give an integer epoch_budget or none")
        search = parse_search(doc["search"], _line(doc, "search"), base, seeds, fixed, pruners)
    else:
        blocks = _grid(doc.get("grid"), _line(doc, "grid"), base, pruners)
    space = Space(path, base, description, fixed, blocks, seeds, pruners, plugins, search)
    _check_model_given(space, doc)
    return space


def _plugins(value: Any, line: int, base: Path) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Located(line, "plugins must be a list of .py files or module names")
    out = []
    for i, spec in enumerate(value):
        resolved = str((base / spec).resolve()) if spec.endswith(".py") or (base / spec).exists() else spec
        try:
            ensure_plugins([resolved])
        except UserError as exc:
            raise _Located(_line(value, i), str(exc)) from None
        out.append(resolved)
    return out


_LOADED_PLUGINS: set[str] = set()


def ensure_plugins(plugins: Iterable[str]) -> None:
    """Import plugin files once per process (a second import would register its pruners twice)."""
    from harness.pruners import load_builtin_pruners, load_plugin

    load_builtin_pruners()
    for spec in plugins:
        if spec not in _LOADED_PLUGINS:
            load_plugin(spec)
            _LOADED_PLUGINS.add(spec)


def _seeds(value: Any, line: int, where: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise _Located(line, f"{where}: a count of seeds must be >= 1 (got {value})")
        return list(range(value))
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value):
        raise _Located(line, f"{where} must be a non-empty list of integers, or a count (got {_kind(value)})")
    if len(set(value)) != len(value):
        raise _Located(line, f"{where} lists a seed twice: {list(value)}")
    return list(value)


def _pruner_sections(value: Any, line: int, base: Path) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Located(line, f"pruners must map a pruner name to its own options (got {_kind(value)})")
    out = {}
    for name, opts in value.items():
        pruner = coerce_option("pruner", name, _line(value, name), base)
        if pruner is None:
            raise _Located(_line(value, name), "pruners: the unpruned baseline takes no pruner options; "
                                               "put its options under fixed")
        parsed = _options(opts, f"pruners.{name}", _line(value, name), base)
        for key in parsed:
            if key == "pruner":
                raise _Located(_line(opts, key), f"pruners.{name}: 'pruner' cannot be set inside a pruner's section")
            if not uses(pruner, key):
                raise _Located(_line(opts, key), f"pruners.{name}.{key}: {name} does not use {key}; "
                                                 f"it reads {', '.join(sorted(pruner_fields(pruner)))}")
        out[pruner] = parsed
    return out


def _grid(value: Any, line: int, base: Path, pruners: dict[str, dict]) -> list[tuple[dict, dict]]:
    if value is None:
        return [({}, {})]
    raw_blocks = value if isinstance(value, list) else [value]
    if not raw_blocks:
        raise _Located(line, "grid is an empty list; give a mapping of option -> list of values")
    blocks = []
    for i, block in enumerate(raw_blocks):
        where = "grid" if not isinstance(value, list) else f"grid[{i}]"
        bline = _line(value, i) if isinstance(value, list) else line
        if not isinstance(block, dict):
            raise _Located(bline, f"{where} must be a mapping of option -> list of values (got {_kind(block)})")
        fixed, axes = {}, {}
        for key, raw in block.items():
            kline = _line(block, key)
            if isinstance(raw, list):
                if not raw:
                    raise _Located(kline, f"{where}.{key} is an empty list; give at least one value")
                axes[key] = [coerce_option(key, v, _line(raw, j), base) for j, v in enumerate(raw)]
                for pruner, section in pruners.items():
                    if key in section:
                        raise _Located(kline, f"{where}.{key} is an axis and also set in pruners.{pruner}; "
                                              "set it in one place")
            else:
                fixed[key] = coerce_option(key, raw, kline, base)
        blocks.append((fixed, axes))
    return blocks


def _check_model_given(space: Space, doc: dict) -> None:
    has = "model" in space.fixed
    if space.search:
        has = has or any(p.key == "model" for p in space.search.params)
        if not has:
            raise _Located(_line(doc, "search"), "no model: set model under fixed (or search it with "
                                                 "model: {choice: [...]})")
        return
    for fixed, axes in space.blocks:
        if not (has or "model" in fixed or "model" in axes):
            raise _Located(_line(doc, "grid") or 1, "no model: set model under fixed or as a grid axis")


# ----------------------------------------------------------------------------- search

def parse_search(value: Any, line: int, base: Path, seeds: list[int], fixed: dict[str, Any],
                 pruners: dict[str, dict]) -> Search:
    """The ``search`` section::

        search:
          objective: top1                 # one of top1 top5 loss flops_reduction params_reduction,
                                          # or a list of them (multi-objective, Pareto front)
          num_samples: 30                 # Optuna trials
          sampler: tpe                    # tpe (default) | random | nsga2
          sampler_seed: 0
          asha: {grace_period: 4, reduction_factor: 3}   # early stopping (single objective, Ray)
          repeat: {top: 3, seeds: [1, 2]} # rerun the best 3 on these seeds (default: seeds[1:])
          space:
            criteria: {subset: [l1, l2, eucl, cos]}       # one boolean per member; encoding: string
            step_rule:                                    #   gives one categorical of "l1+eucl" strings
              choice: [flops, ratio]
              when:                                       # parameters that exist only for one value
                flops: {step_scale: {low: 0.5, high: 2.0, log: true}}
                ratio: {step_scale: {low: 0.05, high: 0.2}}
            recover_epoch: {low: 1, high: 4}              # int when the option is an integer
            target_flops: 0.5                             # a plain value is fixed
    """
    _check_keys(value, SEARCH_KEYS, "search", line)
    objective = value.get("objective", "top1")
    oline = _line(value, "objective")
    names = objective if isinstance(objective, list) else [objective]
    if not names or not all(isinstance(n, str) for n in names):
        raise _Located(oline, f"search.objective must be a metric name or a list of them: {', '.join(METRICS)}")
    for i, name in enumerate(names):
        if name not in METRICS:
            raise _Located(_line(objective, i) if isinstance(objective, list) else oline,
                           f"unknown objective {name!r}{_did_you_mean(name, METRICS)}; metrics: {', '.join(METRICS)}")
    if len(set(names)) != len(names):
        raise _Located(oline, "search.objective lists a metric twice")
    num_samples = value.get("num_samples", 10)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise _Located(_line(value, "num_samples"), f"search.num_samples must be an integer >= 1 (got {num_samples!r})")
    sampler = value.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise _Located(_line(value, "sampler"), f"search.sampler must be one of {', '.join(SAMPLERS)} (got {sampler!r})")
    sampler_seed = value.get("sampler_seed", 0)
    if isinstance(sampler_seed, bool) or not isinstance(sampler_seed, int):
        raise _Located(_line(value, "sampler_seed"), "search.sampler_seed must be an integer")
    asha = None
    if value.get("asha") is not None:
        asha = _asha(value["asha"], _line(value, "asha"))
        if len(names) > 1:
            raise _Located(_line(value, "asha"), "search.asha needs a single objective (ASHA compares one metric); "
                                                 "remove asha or use one objective")
    repeat_top, repeat_seeds = 0, seeds[1:]
    if value.get("repeat") is not None:
        rep, rline = value["repeat"], _line(value, "repeat")
        _check_keys(rep, REPEAT_KEYS, "search.repeat", rline)
        repeat_top = rep.get("top", 1)
        if isinstance(repeat_top, bool) or not isinstance(repeat_top, int) or repeat_top < 0:
            raise _Located(_line(rep, "top"), f"search.repeat.top must be an integer >= 0 (got {repeat_top!r})")
        if "seeds" in rep:
            repeat_seeds = _seeds(rep["seeds"], _line(rep, "seeds"), "search.repeat.seeds")
        if seeds[0] in repeat_seeds:
            raise _Located(_line(rep, "seeds") or rline, f"search.repeat.seeds repeats the search seed {seeds[0]} "
                                                        "(the first of 'seeds'); list only new seeds")
        if repeat_top and not repeat_seeds:
            raise _Located(rline, "search.repeat needs seeds beyond the search seed: add them to 'seeds' "
                                  "or to search.repeat.seeds")
    space = value.get("space")
    sline = _line(value, "space") or line
    if not isinstance(space, dict) or not space:
        raise _Located(sline, "search.space must be a non-empty mapping of option -> parameter")
    params = [_param(key, spec, _line(space, key), base, prefix="") for key, spec in space.items()]
    for p in _walk(params):
        if p.key in fixed and p.name == p.key:
            raise _Located(_line(space, p.key), f"search.space.{p.key} is also set under fixed; set it in one place")
        for pruner, section in pruners.items():
            if p.key in section:
                raise _Located(_line(space, p.key) or sline,
                               f"search.space.{p.key} is also set in pruners.{pruner}; set it in one place")
    return Search(names, [METRICS[n] for n in names], num_samples, sampler, sampler_seed, params, asha,
                  repeat_top, repeat_seeds)


def _asha(value: Any, line: int) -> dict[str, Any]:
    if value is True:
        value = {}
    _check_keys(value, ASHA_KEYS, "search.asha", line)
    out = {"grace_period": value.get("grace_period", 1), "reduction_factor": value.get("reduction_factor", 3),
           "max_t": value.get("max_t", 10_000)}
    for key in ("grace_period", "max_t"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise _Located(_line(value, key) or line, f"search.asha.{key} must be an integer >= 1 (epochs; got {v!r})")
    rf = out["reduction_factor"]
    if isinstance(rf, bool) or not isinstance(rf, (int, float)) or rf <= 1:
        raise _Located(_line(value, "reduction_factor") or line, f"search.asha.reduction_factor must be > 1 (got {rf!r})")
    return out


def _walk(params: list[Param]) -> Iterable[Param]:
    for p in params:
        yield p
        for subs in p.when.values():
            yield from _walk(subs)


def _label(value: Any) -> Any:
    """How a choice is stored by Optuna (categoricals hold None, bool, int, float or str)."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return value


def _param(key: str, spec: Any, line: int, base: Path, prefix: str) -> Param:
    name = f"{key}{prefix}"
    if key == "seed":
        raise _Located(line, "seeds are not searched: the search runs on the first of 'seeds' and "
                             "search.repeat reruns the winners on the others")
    if not isinstance(spec, dict):
        value = coerce_option(key, spec, line, base)  # a plain value: fixed for every trial
        return Param(key, name, "choice", [value], [_label(value)])
    forms = [f for f in PARAM_FORMS if f in spec]
    if len(forms) != 1:
        raise _Located(line, f"search.space.{key} must have exactly one of choice:, low:/high:, subset: "
                             f"(got keys {', '.join(spec) or 'none'})")
    form = forms[0]
    _check_keys(spec, PARAM_KEYS[form], f"search.space.{key}", line)
    action = option_actions().get(key)
    if action is None:
        coerce_option(key, None, line, base)  # raises the unknown-option error
    if form == "choice":
        raw = spec["choice"]
        cline = _line(spec, "choice")
        if not isinstance(raw, list) or not raw:
            raise _Located(cline, f"search.space.{key}.choice must be a non-empty list")
        values = [coerce_option(key, v, _line(raw, i), base) for i, v in enumerate(raw)]
        labels = [_label(v) for v in values]
        if len(set(map(str, labels))) != len(labels):
            raise _Located(cline, f"search.space.{key}.choice lists a value twice")
        p = Param(key, name, "choice", values, labels)
        when = spec.get("when")
        if when is not None:
            wline = _line(spec, "when")
            if not isinstance(when, dict):
                raise _Located(wline, f"search.space.{key}.when must map a choice to its own parameters")
            by_label = {str(lbl): lbl for lbl in labels}
            for choice, sub in when.items():
                label = _label(coerce_option(key, choice, _line(when, choice), base))
                if str(label) not in by_label:
                    raise _Located(_line(when, choice), f"search.space.{key}.when.{choice}: not one of the choices "
                                                        f"({', '.join(map(str, labels))})")
                if not isinstance(sub, dict) or not sub:
                    raise _Located(_line(when, choice), f"search.space.{key}.when.{choice} must be a mapping of "
                                                        "option -> parameter")
                p.when[by_label[str(label)]] = [
                    _param(k, s, _line(sub, k), base, prefix=f"{prefix}[{key}={label}]") for k, s in sub.items()]
        return p
    if form == "subset":
        if getattr(action.type, "__name__", "") != "str_tuple":
            raise _Located(line, f"search.space.{key}: subset: only fits a list option such as criteria")
        members = coerce_option(key, spec["subset"], _line(spec, "subset"), base)
        encoding = spec.get("encoding", "flags")
        if encoding not in ("flags", "string"):
            raise _Located(_line(spec, "encoding"), f"search.space.{key}.encoding must be flags or string "
                                                    f"(got {encoding!r})")
        return Param(key, name, "subset", members=members, encoding=encoding)
    # low/high
    if "high" not in spec:
        raise _Located(line, f"search.space.{key} needs high: with low:")
    kind = action.type
    if kind not in (int, float):
        raise _Located(line, f"search.space.{key}: low/high only fit numeric options; use choice: for {key}")
    low, high = spec["low"], spec["high"]
    for bound, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
            raise _Located(_line(spec, bound), f"search.space.{key}.{bound} must be "
                                               f"{'an integer' if kind is int else 'a number'} (got {v!r})")
    if not low < high:
        raise _Located(_line(spec, "low"), f"search.space.{key}: low must be below high (got {low} and {high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise _Located(_line(spec, "log"), f"search.space.{key}.log must be true or false")
    if log and low <= 0:
        raise _Located(_line(spec, "low"), f"search.space.{key}: log: true needs low > 0")
    step = spec.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0
                             or (kind is int and not isinstance(step, int))):
        raise _Located(_line(spec, "step"), f"search.space.{key}.step must be a positive "
                                            f"{'integer' if kind is int else 'number'}")
    if step is not None and log:
        raise _Located(_line(spec, "step"), f"search.space.{key}: step and log cannot be combined (Optuna)")
    return Param(key, name, "int" if kind is int else "float", low=low, high=high, log=log, step=step)


class SpaceSampler:
    """Optuna define-by-run space: trial -> ``{"options": ...}`` (the trial's run options).

    Parameters the chosen pruner does not read are never suggested (so LAASP-only keys are
    not sampled for a baseline). With ``encoding: flags`` a subset parameter is one boolean per
    member; an all-false draw gives an empty criteria pool, which the trial rejects as a
    failure ("the criteria pool is empty"), recorded and told to Optuna as FAIL.
    Picklable: Ray saves it with the searcher's state.
    """

    def __init__(self, space: Space):
        assert space.search is not None
        self.fixed = dict(space.fixed)
        self.pruners = {k: dict(v) for k, v in space.pruners.items()}
        self.params = space.search.params
        self.seed = space.seeds[0]
        self.fields = _all_pruner_fields()

    def __call__(self, trial) -> dict[str, Any]:
        return {"options": self.options(trial)}

    def options(self, trial) -> dict[str, Any]:
        opts = dict(self.fixed)
        ordered = sorted(self.params, key=lambda p: p.key != "pruner")
        for p in ordered:
            self._apply(p, trial, opts)
            if p.key == "pruner":
                opts.update(self.pruners.get(opts.get("pruner"), {}))
        if not any(p.key == "pruner" for p in self.params):
            opts.update(self.pruners.get(opts.get("pruner"), {}))
        opts["seed"] = self.seed
        return self._for_pruner(opts)

    def _uses(self, pruner: str | None, key: str) -> bool:
        pruning = pruning_options()
        if key in ("pruner", "seed"):
            return True
        if pruner is None:
            return key not in pruning and key not in ("epoch_budget", "from_checkpoint")
        return key not in pruning or key in self.fields.get(pruner, frozenset())

    def _for_pruner(self, opts: dict[str, Any]) -> dict[str, Any]:
        pruner = opts.get("pruner")
        return {k: v for k, v in opts.items() if self._uses(pruner, k)}

    def _apply(self, p: Param, trial, opts: dict[str, Any]) -> None:
        if not self._uses(opts.get("pruner"), p.key):
            return
        if p.kind == "choice":
            if len(p.labels) == 1:
                value, label = p.choices[0], p.labels[0]
            else:
                label = trial.suggest_categorical(p.name, p.labels)
                value = p.choices[p.labels.index(label)]
            opts[p.key] = value
            for sub in p.when.get(label, []):
                self._apply(sub, trial, opts)
        elif p.kind == "int":
            opts[p.key] = trial.suggest_int(p.name, p.low, p.high, step=p.step or 1, log=p.log)
        elif p.kind == "float":
            opts[p.key] = trial.suggest_float(p.name, float(p.low), float(p.high), step=p.step, log=p.log)
        elif p.encoding == "flags":
            opts[p.key] = tuple(m for m in p.members if trial.suggest_categorical(f"{p.name}.{m}", [True, False]))
        else:
            subsets = ["+".join(c) for r in range(1, len(p.members) + 1)
                       for c in itertools.combinations(p.members, r)]
            opts[p.key] = tuple(trial.suggest_categorical(p.name, subsets).split("+"))


def _all_pruner_fields() -> dict[str, frozenset[str]]:
    from harness.pruners import PRUNERS, load_builtin_pruners

    load_builtin_pruners()
    return {name: pruner_fields(name) for name in PRUNERS.names()}


class _CornerTrial:
    """A stand-in Optuna trial that picks every parameter's first/low (or last/high) value."""

    def __init__(self, last: bool):
        self.last = last
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name, choices):
        if list(choices) == [True, False]:
            return True  # subset flags: the full pool (the empty draw is a trial failure by design)
        return choices[-1 if self.last else 0]

    def suggest_int(self, name, low, high, step=1, log=False):
        return high if self.last else low

    def suggest_float(self, name, low, high, step=None, log=False):
        return high if self.last else low


# ----------------------------------------------------------------------------- plans

def plan_grid(space: Space) -> list[Trial]:
    """Every (block, axis combination, seed) trial once, seeds outermost; names are stable."""
    trials: list[Trial] = []
    seen: set[str] = set()
    for seed in space.seeds:
        for block_fixed, axes in space.blocks:
            keys = list(axes)
            for combo in itertools.product(*(axes[k] for k in keys)):
                opts = {**space.fixed, **block_fixed, **dict(zip(keys, combo))}
                opts.update(space.pruners.get(opts.get("pruner"), {}))
                opts["seed"] = seed
                opts = for_pruner(opts)
                opts.setdefault("pruner", None)
                key = json.dumps(_jsonable_options(opts), sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                trials.append(Trial(trial_name(len(trials), opts), opts))
    _match_budgets(trials, space)
    return trials


def trial_name(index: int, opts: dict[str, Any]) -> str:
    pruner = opts.get("pruner")
    target = f"-t{opts['target_flops']:g}" if pruner is not None and opts.get("target_flops") is not None else ""
    name = f"{index:03d}-{opts.get('model', 'model')}-{pruner or 'unpruned'}{target}-s{opts['seed']}"
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", name)


def _match_key(opts: dict[str, Any]) -> str:
    pruning = set(pruning_options()) - {"target_flops", "prune_epoch"}
    shared = {k: v for k, v in opts.items() if k not in pruning and k not in ("pruner", "epoch_budget")}
    return json.dumps(_jsonable_options(shared), sort_keys=True)


def _match_budgets(trials: list[Trial], space: Space) -> None:
    matched = [t for t in trials if t.options.get("epoch_budget") == MATCH_LAASP]
    if not matched:
        return
    laasp: dict[str, list[Trial]] = {}
    for t in trials:
        if t.options.get("pruner") == "laasp":
            laasp.setdefault(_match_key(t.options), []).append(t)
    for t in matched:
        twins = laasp.get(_match_key(t.options), [])
        if len(twins) != 1:
            why = "no LAASP trial" if not twins else f"{len(twins)} LAASP trials ({', '.join(x.name for x in twins)})"
            raise UserError(f"epoch_budget: laasp: trial {t.name} needs exactly one LAASP trial with the same "
                            f"model, data, training options, target_flops, prune_epoch and seed, but the plan has {why}")
        t.budget_from, t.stage = twins[0].name, "matched"


def validate_plan(space: Space, trials: list[Trial]) -> None:
    """Build every trial's JobConfig (no data read): bad combinations fail before any trial runs."""
    for t in trials:
        opts = dict(t.options)
        if t.budget_from:
            opts.pop("epoch_budget", None)
        try:
            job_config(opts, None, space.plugins)
        except UserError as exc:
            raise UserError(f"trial {t.name}: {exc}") from None


def validate_search(space: Space) -> None:
    """The search's corner samples (every first/low, every last/high value) must make valid configs."""
    sampler = SpaceSampler(space)
    for last in (False, True):
        opts = sampler.options(_CornerTrial(last))
        try:
            job_config(opts, None, space.plugins)
        except UserError as exc:
            which = "last/high" if last else "first/low"
            raise UserError(f"search.space with every parameter at its {which} value: {exc}") from None


# ----------------------------------------------------------------------------- configs

def job_config(options: dict[str, Any], out: str | None, plugins: Iterable[str] = ()):
    """A trial's options -> `JobConfig`, through the CLI's own flag handling (recipes, checks)."""
    from harness.cli import COMMANDS, job_config_from_args, pruner_config_from_args

    ensure_plugins(plugins)
    opts = dict(options)
    if opts.get("model") is None:
        raise UserError("no model given")
    pruner = opts.get("pruner")
    if opts.get("epoch_budget") == MATCH_LAASP:
        opts.pop("epoch_budget")
    parser = argparse.ArgumentParser(add_help=False)
    COMMANDS.get("run" if pruner else "train")[0](parser)
    argv = ["--model", str(opts["model"])] + (["--pruner", pruner] if pruner else [])
    args = parser.parse_args(argv)
    for key, value in opts.items():
        if key == "pruner" and value is None:
            continue
        if not hasattr(args, key):  # e.g. a pruning option on an unpruned trial: never set by the planner
            raise UserError(f"option {key} does not apply to an unpruned run")
        setattr(args, key, value)
    args.out, args.quiet = out, True
    if pruner:
        args.plugin = []
        return job_config_from_args(args, pruner_config=pruner_config_from_args(args))
    return job_config_from_args(args)
