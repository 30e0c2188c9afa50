"""Which experiment a record belongs to: the registered pruner it ran and the table group it
makes (a pruner's variant is its own group).

Here, below the results layer, because a run needs it too: a scratch run names the group of
the run whose architecture it trains (`harness.job.scratch`). `harness.results.load` reads
records through these functions.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

# Pruners renamed since: a record written before the rename (it has no ``method`` block, which
# every record has had since) is read under the new name. ``fpgm`` was the hard one-shot
# geometric-median criterion until the published soft FPGM took the name.
RENAMED = {"fpgm": "gm_uniform"}


def pruner_of(record: dict[str, Any]) -> str | None:
    """The registered name of the record's pruner today (`RENAMED` for records older than the rename)."""
    name = record.get("pruner")
    if name in RENAMED and "method" not in record:
        return RENAMED[name]
    return name


def group_of(record: dict[str, Any]) -> str | None:
    """The group a run belongs to in tables, plots and ``--against``: the pruner's name, with the
    variant that makes it a different experiment (None: the unpruned baseline).

    - ``l1_uniform@iterative``: a one-shot pruner run on LAASP's iterative schedule;
    - ``laasp[l1]``: a pruner with a criterion pool other than its default (pool size is an axis);
    - ``sfp(prune_epoch=3)``: a published setting the pruner sets on purpose (its Config's
      ``OWN_DEFAULTS``, e.g. SFP's masks from epoch 0) overridden, so the row is not the paper's method;
    - ``scratch-E[laasp]``, ``scratch-B[laasp]``: the final architecture of a ``laasp`` run
      trained from random initialisation (Liu et al. 2019's Scratch-E and Scratch-B).
    """
    scratch = record.get("scratch")
    if isinstance(scratch, dict):
        return f"scratch-{scratch.get('budget', '?')}[{scratch.get('source_group') or scratch.get('source_pruner')}]"
    name = pruner_of(record)
    if name is None:
        return None
    # a trial that failed before its config was built keeps only its sweep options
    pcfg = record_field(record, "config", "pruner_config") or record.get("options") or {}
    pool = pcfg.get("criteria")
    if isinstance(pool, (list, tuple)) and tuple(pool) != default_pool(name):
        name = f"{name}[{','.join(pool)}]"
    changed = [f"{key}={pcfg[key]}" for key, value in own_defaults(name).items()
               if pcfg.get(key) is not None and pcfg[key] != value]
    if changed:
        name = f"{name}({','.join(changed)})"
    if pcfg.get("schedule") not in (None, "oneshot"):
        name = f"{name}@{pcfg['schedule']}"
    return name


@functools.lru_cache(maxsize=None)
def own_defaults(pruner: str) -> dict[str, Any]:
    """The published settings the registered pruner's Config sets in place of the recipe's
    (``OWN_DEFAULTS``), with their values; empty when it has none or is not registered."""
    from harness.prune.plugins import load_builtin_pruners
    from harness.prune.pruner import PRUNERS

    load_builtin_pruners()
    if pruner not in PRUNERS:
        return {}
    config = PRUNERS.get(pruner).Config
    own = getattr(config, "OWN_DEFAULTS", ())
    return {f.name: f.default for f in dataclasses.fields(config)
            if f.name in own and f.default is not dataclasses.MISSING}


@functools.lru_cache(maxsize=None)
def default_pool(pruner: str) -> tuple[str, ...] | None:
    """The registered pruner's default ``criteria`` (None when it has none or is not registered);
    once per pruner name, not once per record."""
    from harness.prune.plugins import load_builtin_pruners
    from harness.prune.pruner import PRUNERS

    load_builtin_pruners()
    if pruner not in PRUNERS:
        return None
    for f in dataclasses.fields(PRUNERS.get(pruner).Config):
        if f.name == "criteria" and f.default is not dataclasses.MISSING:
            return tuple(f.default)
    return None


def record_field(record: Any, *path: str) -> Any:
    """``record[path[0]][path[1]]...``, or None where a level is missing (records of every age)."""
    for key in path:
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record
