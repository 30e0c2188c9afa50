"""The sweep folder: what was asked, its plan, its stages and its Optuna study.

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

import re
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import UserError
from harness.job.records import read_json, write_json_atomic
from harness.sweep.plan import plan_grid, validate_plan, validate_search
from harness.sweep.space import Space, Trial, load_space, options_from_json
from harness.sweep.trainable import SweepContext

SWEEP_FILE = "sweep.json"
SPACE_COPY = "space.yaml"
DB_NAME = "optuna.db"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
Say = Callable[[str], None]  # where progress lines go


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
        set_metric_names(study, s.objective)
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


def set_metric_names(study, names: list[str]) -> None:
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


def resume_command(root: Path) -> str:
    """The command that continues the sweep in ``root`` (``--results-dir`` only when not the default)."""
    default = root.parent == Path("results").resolve()
    return f"run_bench.py sweep --resume {root.name}" + ("" if default else f" --results-dir {root.parent}")
