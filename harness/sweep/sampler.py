"""The Optuna define-by-run space of a search, and the corner trials that validate it."""
from __future__ import annotations

import itertools
from typing import Any

from harness.sweep.options import uses
from harness.sweep.search import Param
from harness.sweep.space import Space


GATES = ("pruner", "schedule")  # a one-shot baseline reads the iterative settings only with schedule: iterative


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

    def __call__(self, trial) -> dict[str, Any]:
        return {"options": self.options(trial)}

    def options(self, trial) -> dict[str, Any]:
        opts = dict(self.fixed)
        # the keys that decide which others a trial reads first: the pruner, then its schedule
        ordered = sorted(self.params, key=lambda p: GATES.index(p.key) if p.key in GATES else len(GATES))
        for p in ordered:
            self._apply(p, trial, opts)
            if p.key == "pruner":
                opts.update(self.pruners.get(opts.get("pruner"), {}))
        if not any(p.key == "pruner" for p in self.params):
            opts.update(self.pruners.get(opts.get("pruner"), {}))
        opts["seed"] = self.seed
        return self._for_pruner(opts)

    def _for_pruner(self, opts: dict[str, Any]) -> dict[str, Any]:
        pruner = opts.get("pruner")
        return {k: v for k, v in opts.items() if uses(pruner, k, opts)}

    def _apply(self, p: Param, trial, opts: dict[str, Any]) -> None:
        if not uses(opts.get("pruner"), p.key, opts):
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
