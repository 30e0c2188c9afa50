"""The Optuna study of a search (``optuna.db``, sqlite): the searcher's whole truth, kept in
line with the records whatever ended the last driver.

- Sampling is a function of the study's finished trials and the trial number
  (`TrialSeededSampler`): a resumed search asks what the uninterrupted one would have.
- `reconcile` runs first on every (re)start: a trial the study still calls RUNNING whose record
  exists is told its outcome; one without a record is handed back (`pending`) to run again
  under its own number, continuing from ``trials/sNNNN/state.pt``; a finished trial whose
  record is missing (the driver died in between) gets its record written from its state.
- Outcomes are told from records (`tell_record`): ok -> COMPLETE with the objective values,
  stopped by ASHA -> PRUNED, failed -> FAIL.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

from harness.job.records import read_json
from harness.sweep.faults import fault
from harness.sweep.sampler import SpaceSampler
from harness.sweep.space import Trial
from harness.sweep.trainable import SweepContext, driver_record, objective_values, past_reports, saved_history

DB_NAME = "optuna.db"


def storage_url(root: Path) -> str:
    return f"sqlite:///{Path(root) / DB_NAME}"


def search_name(number: int) -> str:
    return f"s{number:04d}"


def _base_sampler(kind: str, seed: int):
    import optuna

    make = {"random": optuna.samplers.RandomSampler, "nsga2": optuna.samplers.NSGAIISampler}
    return make.get(kind, optuna.samplers.TPESampler)(seed=seed)


def trial_seeded_sampler(kind: str, seed: int):
    """The search's sampler, re-made for every trial with a seed drawn from (``seed``, trial number)."""
    import numpy as np
    from optuna.samplers import BaseSampler

    def for_trial(number: int):
        return _base_sampler(kind, int(np.random.SeedSequence([seed, number]).generate_state(1)[0]))

    class TrialSeededSampler(BaseSampler):
        """Optuna samplers draw from one random stream for the whole study, so a search restarted
        after a crash would draw trial k's values from the stream's start. Re-made per trial,
        trial k's values depend only on the finished trials and k."""

        def __init__(self) -> None:
            self.current = for_trial(0)

        def before_trial(self, study, trial) -> None:
            self.current = for_trial(trial.number)
            self.current.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self.current.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self.current.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self.current.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values) -> None:
            for_trial(trial.number).after_trial(study, trial, state, values)

    return TrialSeededSampler()


def open_study(root: Path, name: str, search, create: bool = True):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not create:
        return optuna.load_study(study_name=name, storage=storage_url(root))
    study = optuna.create_study(storage=storage_url(root), study_name=name, directions=search.directions,
                                sampler=trial_seeded_sampler(search.sampler, search.sampler_seed), load_if_exists=True)
    set_metric_names(study, search.objective)
    return study


def set_metric_names(study, names: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning
        try:
            study.set_metric_names(list(names))
        except Exception:  # noqa: BLE001 - names are a courtesy for plots
            pass


def running_trial(study, number: int):
    """An optuna Trial for a trial the study holds as RUNNING: its stored parameters come back
    from every suggest call (Optuna has no public call to reopen one)."""
    import optuna

    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.trial.Trial(study, trial_id)


def search_trial(sampler: SpaceSampler, ot) -> Trial:
    """The sweep trial of an Optuna trial: its options from the space, its name from its number."""
    options = sampler.options(ot)
    return Trial(search_name(ot.number), options, stage="search", search={"number": ot.number, "params": dict(ot.params)})


def tell_record(study, number: int, record: dict[str, Any], search, root: Path) -> None:
    from optuna.trial import TrialState

    status = record.get("status")
    if status == "ok":
        values = objective_values(record, search.objective)
        study.tell(number, values if search.multi else values[0])
    else:
        study.tell(number, state=TrialState.PRUNED if status == "stopped" else TrialState.FAIL)
    fault("study_tell", root)


def finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)))


def reconcile(ctx: SweepContext, study, search, sampler: SpaceSampler,
              complete_run: Callable[[Trial], dict[str, Any]]) -> list[int]:
    """Make the study and the records agree; return the RUNNING trials to run again (by number).

    ``complete_run`` turns a trial whose run finished (``trials/<name>/record.json``) into its
    sweep record without training again.
    """
    from optuna.trial import TrialState

    pending = []
    for t in study.get_trials(deepcopy=False):
        name = search_name(t.number)
        path = ctx.record_path(name)
        record = read_json(path) if path.exists() else None
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            if record is not None:
                tell_record(study, t.number, record, search, ctx.root)
            else:
                pending.append(t.number)
        elif record is None:
            trial = Trial(name, sampler.options(_Stored(t)), stage="search",
                          search={"number": t.number, "params": dict(t.params)})
            if (ctx.trial_dir(name) / "record.json").exists():
                complete_run(trial)
            else:
                status = {TrialState.PRUNED: "stopped", TrialState.COMPLETE: "failed"}.get(t.state, "failed")
                driver_record(ctx, trial, status, f"the search told Optuna {t.state.name} but the sweep stopped "
                                                  "before this record was written; rebuilt from the trial's state")
    return pending


class _Stored:
    """A finished Optuna trial as a define-by-run trial: every suggest returns its stored value."""

    def __init__(self, frozen):
        self.params, self.number = dict(frozen.params), frozen.number

    def suggest_categorical(self, name, choices):
        return self.params[name]

    def suggest_int(self, name, low, high, step=1, log=False):
        return self.params[name]

    def suggest_float(self, name, low, high, step=None, log=False):
        return self.params[name]


def rebuild_rungs(rungs, ctx: SweepContext, study, search, sampler: SpaceSampler, pending: list[int]) -> list[int]:
    """ASHA's rungs as the uninterrupted search left them: every recorded trial's reports in trial
    order, then each pending trial's saved history. A pending trial the replay stops (the
    driver died on that decision) gets its ``stopped`` record and PRUNED; the rest is returned."""
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        path = ctx.record_path(search_name(t.number))
        if path.exists():
            record = read_json(path)
            rungs.replay(search_name(t.number), past_reports(record.get("history") or [], record))
    still = []
    for number in pending:
        name = search_name(number)
        reports = past_reports(saved_history(ctx.trial_dir(name) / "state.pt"))
        stop = rungs.replay(name, reports)
        if stop is None:
            still.append(number)
            continue
        trial = search_trial(sampler, running_trial(study, number))
        record = driver_record(ctx, trial, "stopped", rungs.reason(reports[stop]), upto_epoch=reports[stop]["epoch"])
        tell_record(study, number, record, search, ctx.root)
    return still


def make_rungs(search):
    """ASHA's rungs for a search with ``asha:``, else None."""
    if not search.asha:
        return None
    from harness.sweep.asha import Rungs

    return Rungs(mode="max" if search.directions[0] == "maximize" else "min", metric=search.objective[0],
                 **search.asha)


def repeat_trials(ctx: SweepContext, study, search, sampler: SpaceSampler) -> list[Trial]:
    """The winners of the search (the Pareto front of a multi-objective one) on the repeat seeds."""
    from optuna.trial import TrialState

    complete = list(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if search.multi:
        front = {t.number for t in study.best_trials}
        pool = [t for t in complete if t.number in front]
    else:
        pool = complete
    sign = [1.0 if d == "maximize" else -1.0 for d in search.directions]
    pool.sort(key=lambda t: [-sg * v for sg, v in zip(sign, t.values)] + [t.number])
    trials = []
    for winner in pool[: search.repeat_top]:
        if not ctx.record_path(search_name(winner.number)).exists():
            continue
        options = sampler.options(_Stored(winner))
        for seed in search.repeat_seeds:
            trials.append(Trial(f"r{winner.number:04d}-s{seed}", {**options, "seed": seed}, stage="repeat",
                                search={"repeat_of": winner.number, "params": dict(winner.params)}))
    return trials


__all__ = ["DB_NAME", "finished", "make_rungs", "open_study", "rebuild_rungs", "reconcile", "repeat_trials",
           "running_trial",
           "search_name", "search_trial", "set_metric_names", "storage_url", "tell_record"]
