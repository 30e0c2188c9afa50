"""Search-space YAML files: schema, validation (errors name the key and its line), trial plans.

A space file describes either a **grid** (every combination of some options, for every seed)
or an Optuna **search**. Options are the flags of ``run_bench.py run`` spelled with
underscores (``target_flops``, ``recover_epoch``, ``max_prune_rate``, ``criteria``, ...);
each trial's options become a `JobConfig` through the run options table
(`harness.job.options.job_config_from_options`), the command line's own, so recipe defaults and validation are identical.

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
actually trained, recovery included, and the unpruned trial the largest budget of its LAASP
twins (every target of its seed): those trials run in a second stage. ``epoch_budget: none``
(e.g. in a grid block) leaves a trial without a budget. ``arch_from: <pruner>`` with
``scratch: E`` or ``B`` (or ``[E, B]``), in a grid block without a pruner, makes scratch trials
(`harness.job.scratch`): each trains, from random initialisation, the final architecture of its
twin of that pruner (same options, target_flops and seed), in a last stage.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError
from harness.prune.plugins import ensure_plugins
from harness.sweep.options import (MATCH_LAASP, SCRATCH_KEYS, _options, coerce_option, portable_options, pruner_fields,
                                   resolved_options, uses)
from harness.sweep.search import Search, _seeds, parse_search
from harness.sweep.yaml_lines import _check_keys, _kind, _line, _Loader, _Located

TOP_KEYS = ("description", "plugins", "fixed", "pruners", "seeds", "grid", "search")


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
    arch_from_trial: str | None = None   # scratch trials: the trial whose final architecture this one trains

    def to_json(self) -> dict[str, Any]:
        """JSON with file options relative to the repository (sweep.json is portable)."""
        d = {"name": self.name, "options": _jsonable_options(portable_options(self.options)), "stage": self.stage,
             "budget_from": self.budget_from, "search": self.search}
        if self.arch_from_trial:  # only when set: plans kept before it existed still read as unchanged
            d["arch_from_trial"] = self.arch_from_trial
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Trial":
        return cls(d["name"], resolved_options(options_from_json(d["options"])), d.get("stage", "main"),
                   d.get("budget_from"), d.get("search"), d.get("arch_from_trial"))


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
    pruners = _pruner_sections(doc.get("pruners"), _line(doc, "pruners"), base, fixed)
    if "grid" in doc and "search" in doc:
        raise _Located(_line(doc, "search"), "a space is a grid or a search, not both: remove 'grid' or 'search' "
                                             "(a search repeats its winners on more seeds with search.repeat)")
    blocks: list[tuple[dict, dict]] = []
    search = None
    if "search" in doc:
        if MATCH_LAASP in [fixed.get("epoch_budget")] + [p.get("epoch_budget") for p in pruners.values()]:
            raise _Located(_line(doc, "search"), "epoch_budget: laasp matches grid trials to their LAASP twin; "
                                                 "a search has none: give an integer epoch_budget or none")
        if any(k in fixed for k in SCRATCH_KEYS):
            raise _Located(_line(doc, "search"), "arch_from/scratch train a grid trial's twin's architecture; a "
                                                 "search has no twins: use a grid")
        search = parse_search(doc["search"], _line(doc, "search"), base, seeds, fixed, pruners)
        if any(p.key in SCRATCH_KEYS for p in search.params):
            raise _Located(_line(doc, "search"), "arch_from/scratch cannot be searched; use a grid")
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


def _pruner_sections(value: Any, line: int, base: Path, fixed: dict[str, Any]) -> dict[str, dict[str, Any]]:
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
            if not uses(pruner, key, {**fixed, **parsed}):
                held = key in pruner_fields(pruner)  # read only with other settings (schedule: iterative)
                raise _Located(_line(opts, key), f"pruners.{name}.{key}: {name} does not use {key}" + (
                    " unless schedule: iterative; set schedule: iterative in this section or under fixed" if held
                    else f"; it reads {', '.join(sorted(pruner_fields(pruner)))}"))
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
