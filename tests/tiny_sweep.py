"""A small real "sweep" folder for the plot and report tests, built once per test session.

Tiny digits runs through the CLI (in-process, one thread): two unpruned seeds, two LAASP seeds,
one l1_uniform and one fpgm run, each record copied into ``<sweep>/records/<name>.json`` the
way a sweep stores its trials (``status``, ``trial_id``, ``sweep``, ``search``), plus one
failed trial, a ``latency`` entry measured on each pruned checkpoint, and an ``optuna.db``
with a one-objective and a two-objective study.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch

_CACHE: dict[str, Path] = {}

COMMON = ["--model", "resnet20", "--dataset", "digits", "--train-subset", "300", "--test-subset", "120", "--quiet"]
PRUNE = ["--epochs", "2", "--prune-epoch", "1", "--target-flops", "0.2"]
LAASP = ["--subset-size", "32", "--step-scale", "10", "--recover-epoch", "1", "--recover-flop", "0.1"]
RUNS = {
    "base_s0": ["train", "--epochs", "2", "--seed", "0"],
    "base_s1": ["train", "--epochs", "2", "--seed", "1"],
    "laasp_s0": ["run", "--pruner", "laasp", *PRUNE, *LAASP, "--seed", "0"],
    "laasp_s1": ["run", "--pruner", "laasp", *PRUNE, *LAASP, "--seed", "1"],
    "l1_s0": ["run", "--pruner", "l1_uniform", *PRUNE, "--seed", "0"],
    "fpgm_s0": ["run", "--pruner", "fpgm", *PRUNE, "--seed", "0"],
}


def get_tiny_sweep(tmp_path_factory) -> Path:
    if "sweep" not in _CACHE:
        _CACHE["sweep"] = _build(tmp_path_factory.mktemp("tiny_sweep"))
    return _CACHE["sweep"]


def _build(root: Path) -> Path:
    from harness.job.checkpoint import load_checkpoint
    from harness.cli import main
    from harness.job.latency import speedup
    from harness.models import build_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sweep = root / "sweep"
        (sweep / "records").mkdir(parents=True)
        for number, (name, args) in enumerate(RUNS.items()):
            out = root / "runs" / name
            assert main([*args, *COMMON, "--out", str(out)]) == 0, name
            record = json.loads((out / "record.json").read_text())
            if record["pruner"] is not None:
                model = load_checkpoint(out / "checkpoint.pt")[0]
                record["latency"] = speedup(model, build_model("resnet20", 10, 1), 8, 1, "cpu", warmup=1, repeats=3)
            record.update(status="ok", trial_id=name, sweep="tiny",
                          search={"value": record["final"]["top1"], "number": number})
            (sweep / "records" / f"{name}.json").write_text(json.dumps(record))
        failed = {k: v for k, v in json.loads((sweep / "records" / "laasp_s0.json").read_text()).items()
                  if k in ("model", "dataset", "pruner", "seed", "config")}
        failed.update(seed=2, status="failed", trial_id="laasp_s2", sweep="tiny",
                      error="RuntimeError: CUDA out of memory (simulated)")
        failed["config"]["seed"] = 2
        (sweep / "records" / "laasp_s2.json").write_text(json.dumps(failed))
        _optuna_db(sweep / "optuna.db")
        shutil.rmtree(root / "runs")
        return sweep
    finally:
        torch.set_num_threads(threads)


def _optuna_db(path: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}"
    single = optuna.create_study(study_name="single", storage=url, direction="maximize",
                                 sampler=optuna.samplers.RandomSampler(seed=0))
    single.optimize(lambda t: 90 - (t.suggest_float("x", -3, 3)) ** 2, n_trials=8)
    single.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                               params={"x": 0.0},
                                               distributions={"x": optuna.distributions.FloatDistribution(-3, 3)}))
    multi = optuna.create_study(study_name="multi", storage=url, directions=["maximize", "maximize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # set_metric_names is "experimental"
        multi.set_metric_names(["top-1 (%)", "FLOPs reduction (%)"])
    multi.optimize(lambda t: (lambda x: (90 - 20 * x * x, 100 * x))(t.suggest_float("x", 0, 1)), n_trials=10)
