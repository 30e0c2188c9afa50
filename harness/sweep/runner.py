"""The sweep folder, its stages, and the two executors (Ray Tune, or serial in-process).

Folder ``<results-dir>/<name>/``::

    sweep.json        what was asked (space, executor, resources, data root) and the plan
    space.yaml        a copy of the space file (a resume reads this copy)
    records/<trial>.json   one self-contained record per finished trial (ok, failed or stopped)
    trials/<trial>/   the run's checkpoint.pt (and state.pt while it runs)
    ray/<stage>/      Ray Tune's experiment folders (results, checkpoints, TensorBoard files)
    optuna.db         Optuna storage of a search (sqlite), the searcher's whole history

Stages run in order: a grid has ``main`` (and ``matched``: the trials whose epoch budget
copies a LAASP trial's); a search has ``search`` (Optuna) and ``repeat`` (the winners on
more seeds: Optuna cannot take a grid, so this is a second, planned pass). A stage stops the
sweep when it ends with trials unfinished (Ctrl-C): ``--resume`` continues it.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import UserError
from harness.records import read_json, write_json_atomic
from harness.sweep.space import (Space, Trial, load_space, options_from_json, plan_grid, validate_plan,
                                 validate_search, SpaceSampler)
from harness.sweep.trainable import (SerialExecutor, SweepContext, describe_result, objective_values,
                                     ray_trainable)

SWEEP_FILE = "sweep.json"
SPACE_COPY = "space.yaml"
DB_NAME = "optuna.db"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Resources:
    executor: str = "ray"
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None

    @property
    def threads(self) -> int:
        return max(1, int(round(self.cpus_per_trial)))


class Sweep:
    """A sweep on disk: its space, plan, context and stages."""

    def __init__(self, root: Path, meta: dict[str, Any], space: Space, resources: Resources):
        self.root, self.meta, self.space, self.resources = root, meta, space, resources
        self.name = meta["name"]
        self.ctx = SweepContext(self.name, str(root), tuple(space.plugins), resources.threads, resources.executor,
                                space.search.describe() if space.search else None)
        self.grid = plan_grid(space) if space.kind == "grid" else []

    # ------------------------------------------------------------------ creation / resume
    @classmethod
    def create(cls, space_path: str | Path, name: str | None, results_dir: str | Path, resources: Resources,
               data_root: str | None = None) -> "Sweep":
        space_path = Path(space_path)
        name = name or space_path.stem
        if not NAME_RE.match(name):
            raise UserError(f"--name {name!r}: use letters, digits, '_', '-' and '.' only")
        root = (Path(results_dir) / name).resolve()
        if (root / SWEEP_FILE).exists():
            raise UserError(f"{root} already holds the sweep {name!r}: continue it with `{resume_command(root)}`, "
                            "or pick another --name (nothing was changed)")
        if root.exists() and any(root.iterdir()):
            raise UserError(f"{root} exists and is not a sweep folder; pick another --name or --results-dir")
        data_root = str(Path(data_root).expanduser().resolve()) if data_root else None
        space = load_space(space_path, overrides={"data_root": data_root})
        _check_resources(resources, space)
        meta = {"version": 1, "name": name, "kind": space.kind, "space": str(space_path.resolve()),
                "space_dir": str(space.base_dir), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "data_root": data_root, "resources": resources.__dict__, "description": space.description}
        sweep = cls(root, meta, space, resources)
        sweep.validate()
        sweep.meta["planned"] = [t.name for t in sweep.grid]
        root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(space_path, root / SPACE_COPY)
        sweep.save_meta()
        return sweep

    @classmethod
    def resume(cls, name: str, results_dir: str | Path, overrides: dict[str, Any]) -> "Sweep":
        root = (Path(results_dir) / name).resolve()
        if not (root / SWEEP_FILE).exists():
            raise UserError(f"no sweep {name!r} to resume: {root / SWEEP_FILE} does not exist "
                            f"(sweeps live in --results-dir, default results/)")
        meta = read_json(root / SWEEP_FILE)
        res = Resources(**meta["resources"])
        for key, value in overrides.items():
            if value is not None and key != "data_root":
                setattr(res, key, value)
        if res.executor != meta["resources"]["executor"] and meta["kind"] == "search":
            raise UserError(f"the search {name!r} ran with --executor {meta['resources']['executor']}; resume it with "
                            "the same executor (the two keep the searcher's state differently)")
        data_root = overrides.get("data_root")
        data_root = str(Path(data_root).expanduser().resolve()) if data_root else meta.get("data_root")
        space = load_space(root / SPACE_COPY, base_dir=meta["space_dir"], overrides={"data_root": data_root},
                           display=f"{root / SPACE_COPY} (copy of {meta['space']})")
        _check_resources(res, space)
        meta["data_root"] = data_root
        meta["resources"] = dict(res.__dict__)
        sweep = cls(root, meta, space, res)
        if [t.name for t in sweep.grid] != meta.get("planned", []):
            raise UserError(f"the plan of {name!r} changed since it started (registered pruners or plugins?); "
                            "start a new sweep with --name")
        sweep.validate()
        sweep.save_meta()
        return sweep

    def save_meta(self) -> None:
        write_json_atomic(self.root / SWEEP_FILE, self.meta)

    def validate(self) -> None:
        """Every config valid, data zips extracted once: bad input stops here, before any trial."""
        if self.space.kind == "grid":
            validate_plan(self.space, self.grid)
            options = [t.options for t in self.grid]
        else:
            validate_search(self.space)
            options = [dict(self.space.fixed)]
        _prepare_data(options)

    # ------------------------------------------------------------------ stages
    def stages(self) -> list[str]:
        if self.space.kind == "grid":
            return ["main"] + (["matched"] if any(t.stage == "matched" for t in self.grid) else [])
        return ["search"] + (["repeat"] if self.space.search.repeat_top > 0 else [])

    def stage_trials(self, stage: str) -> list[Trial] | None:
        """Planned trials of a stage (None for the Optuna search, whose trials are sampled)."""
        if stage == "search":
            return None
        if stage == "repeat":
            return self.repeat_plan()
        return [t for t in self.grid if t.stage == stage]

    def records(self) -> list[dict[str, Any]]:
        return [read_json(p) for p in sorted(self.ctx.records.glob("*.json")) if not p.name.startswith(".")]

    def has_record(self, name: str) -> bool:
        return self.ctx.record_path(name).exists()

    # ------------------------------------------------------------------ Optuna
    def storage_url(self) -> str:
        return f"sqlite:///{self.root / DB_NAME}"

    def make_sampler(self):
        import optuna

        s = self.space.search
        if s.sampler == "random":
            return optuna.samplers.RandomSampler(seed=s.sampler_seed)
        if s.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=s.sampler_seed)
        return optuna.samplers.TPESampler(seed=s.sampler_seed)

    def study(self, create: bool = True):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = self.space.search
        if not create:
            return optuna.load_study(study_name=self.name, storage=self.storage_url())
        study = optuna.create_study(storage=self.storage_url(), study_name=self.name, directions=s.directions,
                                    sampler=self.make_sampler(), load_if_exists=True)
        _set_metric_names(study, s.objective)
        return study

    def repeat_plan(self) -> list[Trial]:
        """The winners of the search on the repeat seeds; fixed once computed (kept in sweep.json)."""
        if "repeats" in self.meta:
            return [Trial.from_json(d) for d in self.meta["repeats"]]
        from optuna.trial import TrialState

        s = self.space.search
        study = self.study(create=False)
        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if s.multi:
            front = {t.number for t in study.best_trials}
            pool = [t for t in complete if t.number in front]
        else:
            pool = complete
        sign = [1.0 if d == "maximize" else -1.0 for d in s.directions]
        pool.sort(key=lambda t: [-sg * v for sg, v in zip(sign, t.values)] + [t.number])
        trials = []
        for winner in pool[: s.repeat_top]:
            path = self.ctx.record_path(f"s{winner.number:04d}")
            if not path.exists():
                continue
            options = options_from_json(read_json(path)["options"])
            for seed in s.repeat_seeds:
                trials.append(Trial(f"r{winner.number:04d}-s{seed}", {**options, "seed": seed}, stage="repeat",
                                    search={"repeat_of": winner.number, "params": dict(winner.params)}))
        self.meta["repeats"] = [t.to_json() for t in trials]
        self.save_meta()
        return trials


def _set_metric_names(study, names: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning
        try:
            study.set_metric_names(list(names))
        except Exception:  # noqa: BLE001 - names are a courtesy for plots
            pass


def _check_resources(res: Resources, space: Space) -> None:
    if res.executor not in ("ray", "serial"):
        raise UserError(f"--executor must be ray or serial (got {res.executor!r})")
    if res.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial must be > 0 (got {res.cpus_per_trial})")
    if res.gpus_per_trial < 0:
        raise UserError(f"--gpus-per-trial must be >= 0 (got {res.gpus_per_trial})")
    if res.max_concurrent is not None and res.max_concurrent < 1:
        raise UserError(f"--max-concurrent must be >= 1 (got {res.max_concurrent})")
    if res.executor == "serial" and res.address:
        raise UserError("--address connects to a Ray cluster; it needs --executor ray")
    if res.executor == "ray":
        try:
            import ray  # noqa: F401
            from ray import tune  # noqa: F401
        except ImportError as exc:
            raise UserError(f"--executor ray needs ray[tune] ({exc}); install it or use --executor serial") from None


def _prepare_data(options: list[dict[str, Any]]) -> None:
    """Extract zipped data roots once in the driver, so concurrent trials do not all unzip them."""
    from harness.data import DataConfig, resolve_root

    # the space loader made every data_root absolute; a search's fixed options carry it too
    for root in dict.fromkeys(opts.get("data_root") for opts in options):
        if root:
            resolve_root(DataConfig(data_root=root))


# ----------------------------------------------------------------------------- running

Say = Callable[[str], None]


def run_sweep(sweep: Sweep, say: Say = print) -> int:
    """Run every unfinished stage; 0 when all trials have records, 130 when interrupted."""
    start = time.time()
    planned = f"{len(sweep.grid)} trials" if sweep.space.kind == "grid" else \
        f"{sweep.space.search.num_samples} Optuna trials" + (
            f" + the best {sweep.space.search.repeat_top} on seeds {sweep.space.search.repeat_seeds}"
            if sweep.space.search.repeat_top else "")
    say(f"[{sweep.name}] {sweep.space.kind}: {planned}; executor {sweep.resources.executor}; folder {sweep.root}")
    try:
        for stage in sweep.stages():
            if sweep.resources.executor == "serial":
                complete = _serial_stage(sweep, stage, say)
            else:
                complete = _ray_stage(sweep, stage, say)
            if not complete:
                return _interrupted(sweep, say)
    except KeyboardInterrupt:
        return _interrupted(sweep, say)
    finally:
        if sweep.resources.executor == "ray":
            _ray_shutdown()
    _summary(sweep, time.time() - start, say)
    return 0


def resume_command(root: Path) -> str:
    """The command that continues the sweep in ``root`` (``--results-dir`` only when not the default)."""
    default = root.parent == Path("results").resolve()
    return f"run_bench.py sweep --resume {root.name}" + ("" if default else f" --results-dir {root.parent}")


def _interrupted(sweep: Sweep, say: Say) -> int:
    done = len(list(sweep.ctx.records.glob("*.json")))
    print(f"interrupted: {done} trial record(s) in {sweep.ctx.records}; continue with `{resume_command(sweep.root)}` "
          "(finished trials are kept, unfinished ones resume from their last checkpoint)", file=sys.stderr)
    return 130


def _summary(sweep: Sweep, seconds: float, say: Say) -> None:
    records = sweep.records()
    counts: dict[str, int] = {}
    for r in records:
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    say(f"[{sweep.name}] finished in {seconds:.1f}s: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"; records in {sweep.ctx.records}")
    for r in records:
        say(f"  {describe_result(r.get('trial_id', '?'), r)}")


# ------------------------------------------------------------------ serial
def _serial_stage(sweep: Sweep, stage: str, say: Say) -> bool:
    executor = SerialExecutor(sweep.ctx, say)
    if stage == "search":
        return _serial_search(sweep, executor)
    for trial in sweep.stage_trials(stage):
        executor.run(trial)
    return True


def _serial_search(sweep: Sweep, executor: SerialExecutor) -> bool:
    from optuna.trial import FixedTrial, TrialState

    s = sweep.space.search
    study = sweep.study()
    sampler = SpaceSampler(sweep.space)
    finished = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)

    def run(number: int, options: dict[str, Any], params: dict[str, Any]) -> None:
        trial = Trial(f"s{number:04d}", options, stage="search", search={"number": number, "params": params})
        record = executor.run(trial)
        if record.get("status") == "ok":
            values = objective_values(record, s.objective)
            study.tell(number, values if s.multi else values[0])
        else:
            study.tell(number, state=TrialState.FAIL)

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # interrupted ones first
        run(t.number, sampler.options(FixedTrial(dict(t.params), t.number)), dict(t.params))
    while len(study.get_trials(deepcopy=False, states=finished)) < s.num_samples:
        ot = study.ask()
        options = sampler.options(ot)
        run(ot.number, options, dict(ot.params))
    return True


# ------------------------------------------------------------------ Ray
_RAY_STARTED = False


def _ray_init(sweep: Sweep) -> None:
    global _RAY_STARTED
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray 2.60 no longer hides the GPUs from a task given none; keep CPU trials off them (local cluster;
    # the trainable also does it for clusters started elsewhere)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no tables; our callback prints one line per trial
    _quiet_ray_loggers()
    address = sweep.resources.address
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local throw-away cluster: no token notice
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    else:
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    _RAY_STARTED = True


class _DropKnown(logging.Filter):
    """Ray's own lines for events the sweep already reports (a failed trial has a record with its reason)."""

    KNOWN = ("Trial task failed for trial", "Trials did not complete", "Failed to fetch metrics for")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.KNOWN)


def _quiet_ray_loggers() -> None:
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown())


def _ray_shutdown() -> None:
    global _RAY_STARTED
    if _RAY_STARTED:
        import ray

        ray.shutdown()
        _RAY_STARTED = False


def tune_trial_name(trial) -> str:
    """Tune trial names (and folder names) are the sweep's trial names."""
    config = trial.config
    if "trial" in config:
        return str(config["trial"])
    return f"s{int(config['optuna_number']):04d}"


def _ray_stage(sweep: Sweep, stage: str, say: Say) -> bool:
    trials = sweep.stage_trials(stage)
    if trials is not None and all(sweep.has_record(t.name) for t in trials):
        return True
    searched = len(list(sweep.ctx.records.glob("s[0-9][0-9][0-9][0-9].json")))
    if trials is None and searched >= sweep.space.search.num_samples:
        return True
    _ray_init(sweep)
    from ray import tune

    from harness.sweep.ray_parts import SweepCallback, make_searcher

    res = sweep.resources
    plan = {t.name: t.to_json() for t in trials or []}
    resources = {"cpu": res.cpus_per_trial}
    if res.gpus_per_trial:
        resources["gpu"] = res.gpus_per_trial
    trainable = tune.with_resources(tune.with_parameters(ray_trainable, ctx=sweep.ctx, plan=plan), resources)
    storage = sweep.root / "ray"
    exp = storage / stage
    if tune.Tuner.can_restore(str(exp)):
        say(f"[{sweep.name}] resuming stage {stage} from {exp}")
        tuner = tune.Tuner.restore(str(exp), trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
    else:
        shutil.rmtree(exp, ignore_errors=True)
        search_alg = scheduler = None
        num_samples = 1
        if trials is None:
            s = sweep.space.search
            search_alg = make_searcher(sweep)
            num_samples = s.num_samples
            param_space: dict[str, Any] = {}
            if s.asha:
                from ray.tune.schedulers import ASHAScheduler

                scheduler = ASHAScheduler(time_attr="epoch", metric=s.objective[0],
                                          mode="max" if s.directions[0] == "maximize" else "min", **s.asha)
        else:
            pending = [t.name for t in trials if not sweep.has_record(t.name)]
            param_space = {"trial": tune.grid_search(pending)}
        tuner = tune.Tuner(
            trainable, param_space=param_space,
            tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
                                        max_concurrent_trials=res.max_concurrent, reuse_actors=True,
                                        trial_name_creator=tune_trial_name, trial_dirname_creator=tune_trial_name),
            run_config=tune.RunConfig(name=stage, storage_path=str(storage), verbose=0,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                      failure_config=tune.FailureConfig(max_failures=0),
                                      callbacks=[SweepCallback(sweep.ctx, plan)]))
    results = tuner.fit()
    if trials is not None:
        return all(sweep.has_record(t.name) for t in trials)
    names = [Path(r.path).name for r in results]
    return len(names) >= sweep.space.search.num_samples and all(sweep.has_record(n) for n in names)
