"""The ``search:`` section of a space: objectives, sampler, ASHA, repeats and the searched
parameters (choice / low-high / subset, with conditional ``when:`` branches)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.sweep.options import coerce_option, trial_options
from harness.sweep.yaml_lines import _check_keys, _did_you_mean, _kind, _line, _Located

SEARCH_KEYS = ("objective", "num_samples", "sampler", "sampler_seed", "asha", "repeat", "space")
ASHA_KEYS = ("grace_period", "reduction_factor", "max_t")
REPEAT_KEYS = ("top", "seeds")
PARAM_FORMS = ("choice", "low", "subset")
PARAM_KEYS = {"choice": ("choice", "when"), "low": ("low", "high", "log", "step"),
              "subset": ("subset", "encoding")}
SAMPLERS = ("tpe", "random", "nsga2")
METRICS = {"top1": "maximize", "top5": "maximize", "loss": "minimize", "flops_reduction": "maximize",
           "params_reduction": "maximize"}


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
    option = trial_options().get(key)
    if option is None:
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
        if option.kind != "str_tuple":
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
    kind = int if option.kind == "int" else float if option.kind == "float" else None
    if kind is None:
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
