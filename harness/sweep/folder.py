"""The sweep folder: what was asked, its plan, its stages and its Optuna study.

Folder ``<results-dir>/<name>/``::

    sweep.json        what was asked (space, executor, resources, data root) and the plan
    space.yaml        a copy of the space file (a resume reads this copy)
    sweep.lock        held by the one sweep process working here (`harness.sweep.lock`)
    records/<trial>.json   one self-contained record per finished trial (ok, failed or stopped)
    trials/<trial>/   the run's checkpoint.pt (and state.pt while it runs)
    ray/<stage>/      Ray Tune's experiment folders (results, checkpoints, TensorBoard files)
    optuna.db         Optuna storage of a search (sqlite), the searcher's whole history

Stages run in order: a grid has ``main`` (then ``matched``: the trials whose epoch budget
copies a LAASP trial's; then ``scratch``: the trials that train another trial's architecture);
a search has ``search`` (Optuna) and ``repeat`` (the winners on more seeds: Optuna cannot
take a grid, so this is a second, planned pass). A stage stops the sweep when it ends with
trials unfinished (Ctrl-C): ``--resume`` continues it. What is left
to do is always worked out from the plan, the records and ``optuna.db``, never from Ray's
experiment snapshot, so a driver killed at any moment resumes.

Paths in sweep.json are relative to the repository (`harness.job.records.portable_path`).
"""
from __future__ import annotations

import difflib
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import UserError
from harness.job.records import ensure_writable_folder, portable_path, read_json, resolve_path, write_json_atomic
from harness.sweep.lock import LOCK_NAME, SweepLock
from harness.sweep.plan import plan_grid, validate_plan, validate_search
from harness.sweep.space import Space, Trial, load_space
from harness.sweep.trainable import SweepContext

SWEEP_FILE = "sweep.json"
SPACE_COPY = "space.yaml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
Say = Callable[[str], None]  # where progress lines go


@dataclass
class Resources:
    executor: str = "ray"
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 2  # restarts of a trial whose worker died (Ray), from its last checkpoint
    workers_per_trial: int = 1  # data-parallel processes of each trial; they share the trial's CPUs and GPUs

    @property
    def threads(self) -> int:
        return max(1, int(round(self.cpus_per_trial)))


class Sweep:
    """A sweep on disk: its space, plan, context and stages; holds the folder's lock."""

    def __init__(self, root: Path, meta: dict[str, Any], space: Space, resources: Resources, lock: SweepLock):
        self.root, self.meta, self.space, self.resources, self.lock = root, meta, space, resources, lock
        self.created: list[Path] | None = None  # a sweep started by this process: the folders it made
        self.name = meta["name"]
        self.ctx = SweepContext(self.name, str(root), tuple(space.plugins), resources.threads, resources.executor,
                                space.search.describe() if space.search else None, resources.workers_per_trial)
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
        created = [p for p in [root, *root.parents] if not p.exists()]  # deepest first
        ensure_writable_folder(root, "--results-dir")
        lock = SweepLock(root)
        lock.acquire(name)
        try:
            if (root / SWEEP_FILE).exists():
                raise UserError(f"{root} already holds the sweep {name!r}: continue it with "
                                f"`{resume_command(root)}`, or pick another --name (nothing was changed)")
            if any(p.name != LOCK_NAME for p in root.iterdir()):
                raise UserError(f"{root} exists and is not a sweep folder; pick another --name or --results-dir")
            data_root = str(Path(data_root).expanduser().resolve()) if data_root else None
            space = load_space(space_path, overrides={"data_root": data_root})
            _check_resources(resources, space)
            meta = {"version": 1, "name": name, "kind": space.kind, "space": portable_path(space_path),
                    "space_dir": portable_path(space.base_dir), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "data_root": portable_path(data_root), "resources": resources.__dict__,
                    "description": space.description}
            sweep = cls(root, meta, space, resources, lock)
            sweep.validate()
            sweep.meta["planned"] = [t.name for t in sweep.grid]
            sweep.meta["plan"] = [t.to_json() for t in sweep.grid]
            shutil.copyfile(space_path, root / SPACE_COPY)
            sweep.save_meta()
            sweep.created = created
            return sweep
        except BaseException:
            lock.release()
            _remove_made(root, created)
            raise

    def discard_unstarted(self) -> None:
        """Undo `create` for a sweep refused before any trial ran (the Ray cluster cannot hold a
        trial), so the corrected command starts afresh instead of being told to ``--resume``."""
        if self.created is None or self.records():
            return
        for name in (SWEEP_FILE, SPACE_COPY):
            (self.root / name).unlink(missing_ok=True)
        self.lock.release()
        _remove_made(self.root, self.created)

    @classmethod
    def resume(cls, name: str, results_dir: str | Path, overrides: dict[str, Any], force: bool = False) -> "Sweep":
        root = (Path(results_dir) / name).resolve()
        if not (root / SWEEP_FILE).exists():
            raise UserError(f"no sweep {name!r} to resume: {root / SWEEP_FILE} does not exist "
                            f"(sweeps live in --results-dir, default results/)")
        lock = SweepLock(root)
        lock.acquire(name)
        try:
            return cls._resume(root, name, overrides, force, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _resume(cls, root: Path, name: str, overrides: dict[str, Any], force: bool, lock: SweepLock) -> "Sweep":
        try:
            meta = read_json(root / SWEEP_FILE)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {root / SWEEP_FILE} ({exc}); it is written atomically, so it was edited "
                            "or damaged outside the harness") from None
        res = Resources(**meta["resources"])
        for key, value in overrides.items():
            if value is not None and key != "data_root":
                setattr(res, key, value)
        if res.executor != meta["resources"]["executor"] and meta["kind"] == "search":
            raise UserError(f"the search {name!r} ran with --executor {meta['resources']['executor']}; resume it with "
                            "the same executor (the two keep the searcher's state differently)")
        _check_space_unchanged(root, meta, force)
        data_root = overrides.get("data_root")
        data_root = str(Path(data_root).expanduser().resolve()) if data_root else \
            (str(resolve_path(meta["data_root"])) if meta.get("data_root") else None)
        space = load_space(root / SPACE_COPY, base_dir=resolve_path(meta["space_dir"]),
                           overrides={"data_root": data_root},
                           display=f"{root / SPACE_COPY} (copy of {meta['space']})")
        _check_resources(res, space)
        meta["data_root"] = portable_path(data_root)
        meta["resources"] = dict(res.__dict__)
        sweep = cls(root, meta, space, res, lock)
        _check_plan_unchanged(sweep, meta)
        sweep.validate()
        for stale in sweep.ctx.records.glob(".*.tmp"):  # a record write cut short: its trial is not finished
            stale.unlink()
        sweep.save_meta()
        return sweep

    def save_meta(self) -> None:
        write_json_atomic(self.root / SWEEP_FILE, self.meta)

    def validate(self) -> None:
        """Every config valid, data zips extracted once: bad input stops here, before any trial."""
        workers = self.resources.workers_per_trial
        if self.space.kind == "grid":
            validate_plan(self.space, self.grid, workers)
            options = [t.options for t in self.grid]
        else:
            validate_search(self.space, workers)
            options = [dict(self.space.fixed)]
        _prepare_data(options)

    # ------------------------------------------------------------------ stages
    def stages(self) -> list[str]:
        if self.space.kind == "grid":
            later = [stage for stage in ("matched", "scratch") if any(t.stage == stage for t in self.grid)]
            return ["main", *later]
        return ["search"] + (["repeat"] if self.space.search.repeat_top > 0 else [])

    def stage_trials(self, stage: str) -> list[Trial] | None:
        """Planned trials of a stage (None for the Optuna search, whose trials are sampled)."""
        if stage == "search":
            return None
        if stage == "repeat":
            return self.repeat_plan()
        return [t for t in self.grid if t.stage == stage]

    def planned_count(self) -> int:
        if self.space.kind == "grid":
            return len(self.grid)
        s = self.space.search
        return s.num_samples + s.repeat_top * len(s.repeat_seeds)

    def records(self) -> list[dict[str, Any]]:
        return [read_json(p) for p in sorted(self.ctx.records.glob("*.json")) if not p.name.startswith(".")]

    def has_record(self, name: str) -> bool:
        return self.ctx.record_path(name).exists()

    # ------------------------------------------------------------------ Optuna
    def study(self, create: bool = True):
        from harness.sweep.study import open_study

        return open_study(self.root, self.name, self.space.search, create)

    def repeat_plan(self) -> list[Trial]:
        """The winners of the search on the repeat seeds; fixed once computed (kept in sweep.json)."""
        if "repeats" in self.meta:
            return [Trial.from_json(d) for d in self.meta["repeats"]]
        from harness.sweep.sampler import SpaceSampler
        from harness.sweep.study import repeat_trials

        trials = repeat_trials(self.ctx, self.study(create=False), self.space.search, SpaceSampler(self.space))
        self.meta["repeats"] = [t.to_json() for t in trials]
        self.save_meta()
        return trials


def _check_space_unchanged(root: Path, meta: dict[str, Any], force: bool) -> None:
    """A resume runs the sweep's own copy of its space; an edited original is refused (with the
    diff) unless --force, so nobody believes an edit took effect."""
    original = resolve_path(meta["space"])
    copy = root / SPACE_COPY
    if not original.is_file() or not copy.is_file():
        return
    old, new = copy.read_text().splitlines(keepends=True), original.read_text().splitlines(keepends=True)
    if old == new:
        return
    diff = "".join(difflib.unified_diff(old, new, f"{copy} (what the sweep runs)", str(original)))
    if force:
        print(f"note: {original} changed since the sweep started; --force: resuming with the sweep's own copy "
              f"{copy}, the edit is ignored:\n{diff}", flush=True)
        return
    raise UserError(f"the search space {original} changed since the sweep {meta['name']!r} started; a resume runs "
                    f"its own copy ({copy}), so the edit would be ignored. Start a new sweep with --name for the "
                    f"new space, or resume with --force to ignore the edit. What changed:\n{diff.rstrip()}")


def _check_plan_unchanged(sweep: Sweep, meta: dict[str, Any]) -> None:
    """The same space copy must still plan the same trials (pruners, plugins and recipes are code)."""
    def lines(plan: list[dict[str, Any]]) -> list[str]:
        return [json.dumps({**t, "options": {k: v for k, v in t["options"].items() if k != "data_root"}},
                           sort_keys=True) + "\n" for t in plan]

    if "plan" in meta:
        old, new = lines(meta["plan"]), lines([t.to_json() for t in sweep.grid])
    else:  # sweeps started before the plan was kept: names only
        old, new = [n + "\n" for n in meta.get("planned", [])], [t.name + "\n" for t in sweep.grid]
    if old != new:
        diff = "".join(difflib.unified_diff(old, new, "planned when the sweep started", "planned now"))
        raise UserError(f"the plan of {sweep.name!r} changed since it started (registered pruners, plugins or "
                        f"recipes?); start a new sweep with --name. What changed:\n{diff.rstrip()}")


def _check_resources(res: Resources, space: Space) -> None:
    if res.max_failures < 0:
        raise UserError(f"--max-failures must be >= 0 (got {res.max_failures})")
    if res.executor not in ("ray", "serial"):
        raise UserError(f"--executor must be ray or serial (got {res.executor!r})")
    if res.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial must be > 0 (got {res.cpus_per_trial})")
    if res.gpus_per_trial < 0:
        raise UserError(f"--gpus-per-trial must be >= 0 (got {res.gpus_per_trial})")
    if res.workers_per_trial < 1:
        raise UserError(f"--workers-per-trial must be >= 1 (got {res.workers_per_trial})")
    if res.workers_per_trial > 1 and res.cpus_per_trial < res.workers_per_trial:
        raise UserError(f"--workers-per-trial {res.workers_per_trial} runs that many processes per trial, each "
                        f"needing a core, but --cpus-per-trial is {res.cpus_per_trial:g}; pass --cpus-per-trial "
                        f"{res.workers_per_trial} or more")
    if res.workers_per_trial > 1 and res.gpus_per_trial and res.gpus_per_trial != res.workers_per_trial:
        raise UserError(f"--workers-per-trial {res.workers_per_trial} on GPUs runs one process per GPU: pass "
                        f"--gpus-per-trial {res.workers_per_trial} (got {res.gpus_per_trial:g})")
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


def _remove_made(root: Path, created: list[Path]) -> None:
    """Leave no half-made folder behind a refused start: the lock file and the empty folders it made."""
    if created:
        (root / LOCK_NAME).unlink(missing_ok=True)
        for folder in created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
