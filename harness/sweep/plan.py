"""Trial plans: a grid's trials (names, duplicates planned once, LAASP-matched budgets), and the
checks that build every trial's `JobConfig` before any trial runs."""
from __future__ import annotations

import itertools
import json
import re
from typing import Any, Iterable

from harness.errors import UserError
from harness.job.groups import default_pool, own_defaults
from harness.job.options import job_config_from_options, pruner_config_from_options, run_options
from harness.prune.plugins import ensure_plugins
from harness.sweep.options import MATCH_LAASP, SCRATCH_KEYS, SCRATCH_MATCH_ONLY, for_pruner, pruning_options
from harness.sweep.sampler import SpaceSampler, _CornerTrial
from harness.sweep.space import Space, Trial, _jsonable_options


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
    _match_scratch(trials)
    return trials


def trial_name(index: int, opts: dict[str, Any]) -> str:
    pruner = opts.get("pruner")
    scratch = opts.get("arch_from") is not None
    target = (f"-t{opts['target_flops']:g}" if (pruner is not None or scratch) and opts.get("target_flops") is not None
              else "")
    schedule = f"-{opts['schedule']}" if opts.get("schedule") not in (None, "oneshot") else ""  # a variant's own row
    kind = f"scratch{opts['scratch']}-{opts['arch_from']}" if scratch else f"{pruner or 'unpruned'}{schedule}"
    name = f"{index:03d}-{opts.get('model', 'model')}-{kind}{target}-s{opts['seed']}"
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", name)


def _match_key(opts: dict[str, Any], unpruned: bool = False) -> str:
    """What a trial shares with its LAASP twin: the training options, and for a pruned trial also
    target_flops and prune_epoch (an unpruned trial has neither: every LAASP trial of its run is a twin)."""
    pruning = set(pruning_options()) - (set() if unpruned else {"target_flops", "prune_epoch"})
    shared = {k: v for k, v in opts.items() if k not in pruning and k not in ("pruner", "epoch_budget", "budget_epoch")}
    return json.dumps(_jsonable_options(shared), sort_keys=True)


def _twin_key(opts: dict[str, Any]) -> str:
    """The LAASP-twin key of a pruned trial. A pruner that starts at its paper's own prune epoch
    (SFP and FPGM mask from epoch 0: ``OWN_DEFAULTS``) and is not told otherwise takes the
    LAASP trial that matches on everything else, whatever epoch LAASP prunes at."""
    own = own_defaults(opts.get("pruner") or "")
    if "prune_epoch" in own and opts.get("prune_epoch") in (None, own["prune_epoch"]):
        return "own:" + _match_key(_without(opts, "prune_epoch"))
    return _match_key(opts)


def _without(opts: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in opts.items() if k != key}


def _match_budgets(trials: list[Trial], space: Space) -> None:
    matched = [t for t in trials if t.options.get("epoch_budget") == MATCH_LAASP]
    if not matched:
        return
    laasp: dict[str, list[Trial]] = {}
    for t in trials:
        if t.options.get("pruner") == "laasp":
            laasp.setdefault(_match_key(t.options), []).append(t)
            laasp.setdefault("unpruned:" + _match_key(t.options, unpruned=True), []).append(t)
            laasp.setdefault("own:" + _match_key(_without(t.options, "prune_epoch")), []).append(t)
    for t in matched:
        if t.options.get("pruner") is None:
            # The unpruned baseline takes the largest budget of its LAASP twins (one per target),
            # so no pruned group of the table trains longer than it (names joined by ", ").
            twins = laasp.get("unpruned:" + _match_key(t.options, unpruned=True), [])
            if not twins:
                raise UserError(f"epoch_budget: laasp: unpruned trial {t.name} needs a LAASP trial with the same "
                                "model, data, training options and seed, but the plan has none")
            t.budget_from, t.stage = ", ".join(x.name for x in twins), "matched"
            continue
        twins = _plain_pool(laasp.get(_twin_key(t.options), []), "laasp")
        if len(twins) != 1:
            why = "no LAASP trial" if not twins else f"{len(twins)} LAASP trials ({', '.join(x.name for x in twins)})"
            raise UserError(f"epoch_budget: laasp: trial {t.name} needs exactly one LAASP trial with the same "
                            f"model, data, training options, target_flops, prune_epoch and seed, but the plan has {why}")
        t.budget_from, t.stage = twins[0].name, "matched"


def _match_scratch(trials: list[Trial]) -> None:
    """A scratch trial's twin: the one trial of its ``arch_from`` pruner with the same model, data,
    training options, target_flops, prune_epoch and seed. Scratch trials run last (stage
    ``scratch``), after any matched-budget twin."""
    for t in trials:
        source = t.options.get("arch_from")
        if source is None:
            continue
        key = _match_key({k: v for k, v in t.options.items() if k not in SCRATCH_KEYS})
        twins = _plain_pool([x for x in trials if x.options.get("pruner") == source and _match_key(x.options) == key],
                            source)
        if len(twins) != 1:
            why = f"no {source} trial" if not twins else f"{len(twins)} ({', '.join(x.name for x in twins)})"
            raise UserError(f"arch_from: {source}: trial {t.name} needs exactly one {source} trial with the "
                            "same model, data, training options, target_flops, prune_epoch and seed, but the plan "
                            f"has {why}")
        t.arch_from_trial, t.stage = twins[0].name, "scratch"


def _plain_pool(twins: list[Trial], pruner: str) -> list[Trial]:
    """Twins that differ only in their criteria pool (an ablation's ``laasp[l1]`` beside
    ``laasp``): the one with the pruner's registered pool is the twin, so the other pools are an
    axis of the table rather than an ambiguity."""
    if len(twins) < 2:
        return twins
    default = default_pool(pruner)
    plain = [x for x in twins if tuple(x.options.get("criteria") or default or ()) == default]
    return plain if len(plain) == 1 else twins


def validate_plan(space: Space, trials: list[Trial], workers: int = 1) -> None:
    """Build every trial's JobConfig (no data read; ``workers``: the sweep's processes per trial)
    and check its FLOPs target is reachable: bad combinations fail before any trial runs."""
    reachable: dict[tuple, None] = {}
    for t in trials:
        opts = {**t.options, "workers": workers}
        if t.budget_from:
            opts.pop("epoch_budget", None)
        try:
            _check_reachable(job_config(opts, None, space.plugins), reachable)
        except UserError as exc:
            raise UserError(f"trial {t.name}: {exc}") from None


def validate_search(space: Space, workers: int = 1) -> None:
    """The search's corner samples (every first/low, every last/high value) must make valid configs."""
    sampler = SpaceSampler(space)
    for last in (False, True):
        opts = {**sampler.options(_CornerTrial(last)), "workers": workers}
        try:
            _check_reachable(job_config(opts, None, space.plugins), {})
        except UserError as exc:
            which = "last/high" if last else "first/low"
            raise UserError(f"search.space with every parameter at its {which} value: {exc}") from None


def _check_reachable(cfg, checked: dict[tuple, None]) -> None:
    """The pruner's target against the most its caps allow (`PruneSchedule.check_reachable`), on the
    unpruned model built for the dataset's shape; once per (model, shape, cap, target). Datasets whose
    shape depends on their folder are checked when the trial starts."""
    from harness.data import dataset_shape
    from harness.models import build_model
    from harness.prune.pruner import check_reachable

    if cfg.pruner_config is None:
        return
    try:
        classes, channels, size = dataset_shape(cfg.data.dataset)
    except UserError:
        return
    pcfg = cfg.pruner_config
    key = (cfg.model, classes, channels, size, getattr(type(pcfg), "max_reachable_reduction", None),
           getattr(pcfg, "max_prune_rate", None), getattr(pcfg, "target_flops", None))
    if key not in checked:
        check_reachable(cfg.pruner_config, build_model(cfg.model, classes, channels), size, channels, cfg.model)
        checked[key] = None


def job_config(options: dict[str, Any], out: str | None, plugins: Iterable[str] = (), arch_source: Any = None):
    """A trial's options -> `JobConfig`, through the command line's own path (recipes, checks).

    A scratch trial (``arch_from``) with ``arch_source`` (its twin's record) gets its scratch
    config; without one (planning, before the twin ran), the unpruned config of its options."""
    ensure_plugins(plugins)
    opts = dict(options)
    if opts.get("model") is None:
        raise UserError("no model given")
    if opts.get("arch_from") is not None:
        budget = opts.pop("scratch")
        for key in ("arch_from", *SCRATCH_MATCH_ONLY):
            opts.pop(key, None)
        if arch_source is not None:
            from harness.job.scratch import scratch_job_config

            opts.pop("epochs", None)  # the twin's epochs_trained decides
            return scratch_job_config({**opts, "out": out, "quiet": True}, arch_source, budget)
    pruner = opts.get("pruner")
    if opts.get("epoch_budget") == MATCH_LAASP:
        opts.pop("epoch_budget")
    allowed = {o.name for o in run_options(pruned=bool(pruner))}
    for key in opts:
        if key != "pruner" and key not in allowed:  # e.g. a pruning option on an unpruned trial
            raise UserError(f"option {key} does not apply to an unpruned run")
    opts.update(out=out, quiet=True)
    if pruner:
        opts["plugin"] = ()
        return job_config_from_options(opts, pruner_config=pruner_config_from_options(opts))
    return job_config_from_options(opts)
