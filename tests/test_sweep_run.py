"""Sweeps end to end on tiny digits runs: Ray and serial executors, interruption and resume,
failed trials, Optuna searches (Pareto front in optuna.db, ASHA, repeated seeds)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.sweep import trainable
from tests.helpers import REPO, deterministic, run_cli, sweep_records

BOOM = '''
from dataclasses import dataclass

from harness.prune.pruner import PRUNERS, Pruner


@dataclass(frozen=True)
class BoomConfig:
    target_flops: float
    prune_epoch: int = 0

    def validate(self, job=None) -> None:
        pass


class Boom(Pruner):
    Config = BoomConfig

    def prune(self, ctx):
        raise RuntimeError("boom: this pruner always fails")


if "boom" not in PRUNERS:
    PRUNERS.register("boom")(Boom)
'''

COMMON = """
fixed:
  model: resnet20
  dataset: digits
  train_subset: 300
  test_subset: 100
  epochs: 4
  prune_epoch: 1
  target_flops: 0.3
  lr: 0.05
  device: cpu
"""
LAASP = "  laasp: {recover_epoch: 1, recover_flop: 0.1, step_scale: 3.0, subset_size: 64, criteria: [l1, cos]}\n"
GRID = COMMON + "plugins: [boom.py]\npruners:\n" + LAASP + "grid:\n  pruner: [none, laasp, l1_uniform, boom]\n"
LAASP_TRIAL = "001-resnet20-laasp-t0.3-s0"


@pytest.fixture(scope="module")
def spaces(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("spaces")
    (d / "boom.py").write_text(BOOM)
    (d / "tiny.yaml").write_text(GRID)
    # the same trials plus one whose loss becomes NaN (lr 1e9), for the serial executor
    (d / "tiny_nan.yaml").write_text(GRID.replace("boom]", "boom, random]").replace(
        "pruners:\n", "pruners:\n  random: {lr: 1.0e+9}\n"))
    return d


_records, _numbers = sweep_records, deterministic


@pytest.fixture(scope="module")
def ray_sweep(spaces, tmp_path_factory):
    """A 4-trial Ray sweep, Ctrl-C'd (SIGINT) once a record exists and LAASP has a checkpoint, then resumed."""
    results = tmp_path_factory.mktemp("ray-results")
    sweep = results / "tiny"
    proc = subprocess.Popen([sys.executable, str(REPO / "run_bench.py"), "sweep", str(spaces / "tiny.yaml"),
                             "--results-dir", str(results)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 150
    while time.time() < deadline and proc.poll() is None:
        records = list((sweep / "records").glob("*.json"))
        laasp_checkpointed = any((sweep / "ray" / "main").glob(f"{LAASP_TRIAL}/checkpoint_*"))
        if records and laasp_checkpointed and not (sweep / "records" / f"{LAASP_TRIAL}.json").exists():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    first = {"rc": proc.returncode, "out": out, "err": err, "records": sorted(_records(sweep))}
    resumed = run_cli("sweep", "--resume", "tiny", "--results-dir", str(results), timeout=180)
    return sweep, first, resumed


def test_ray_sweep_interrupted_and_resumed(ray_sweep) -> None:
    sweep, first, resumed = ray_sweep
    assert first["rc"] == 130, first["err"]
    assert "run_bench.py sweep --resume tiny" in first["err"]
    assert 1 <= len(first["records"]) < 4 and f"{LAASP_TRIAL}" not in first["records"]
    assert resumed.returncode == 1, resumed.stderr  # the boom trial failed: exit 1, with a summary line
    assert "1 of 4 trials failed: 003-resnet20-boom-t0.3-s0" in resumed.stderr.splitlines()[-1]
    records = _records(sweep)
    planned = json.loads((sweep / "sweep.json").read_text())["planned"]
    assert sorted(records) == sorted(planned) and len(planned) == 4  # exactly the plan: nothing lost, nothing twice
    assert sorted(r["trial_id"] for r in records.values()) == sorted(planned)
    for name in first["records"]:  # finished before the interruption: not run again
        assert records[name]["resumed"] == []
    laasp = records[LAASP_TRIAL]
    assert laasp["status"] == "ok" and laasp["resumed"] and laasp["resumed"][0]["epochs_trained"] >= 1
    assert laasp["epochs_trained"] == 4 + laasp["recoveries"]
    boom = records["003-resnet20-boom-t0.3-s0"]
    assert boom["status"] == "failed" and "boom: this pruner always fails" in boom["error"]
    assert boom["pruner"] == "boom" and boom["model"] == "resnet20" and boom["seed"] == 0
    assert boom["config"]["pruner_config"]["target_flops"] == 0.3 and boom["history"]  # partial history kept
    for name, rec in records.items():
        if rec["status"] == "ok":
            for key in ("model", "dataset", "pruner", "seed", "config", "env", "history", "final", "flops", "params",
                        "epochs_trained", "wall_time_s", "checkpoint", "trial_id", "sweep", "options"):
                assert key in rec, (name, key)
            assert (sweep / rec["checkpoint"]).is_file() and rec["executor"] == "ray" and rec["sweep"] == "tiny"
            assert rec["checkpoint"] == f"trials/{name}/checkpoint.pt" and rec["config"]["out"] == f"trials/{name}"
            assert not (sweep / "trials" / name / "state.pt").exists()
    assert list((sweep / "ray" / "main").rglob("events.out.tfevents*"))  # Tune's logs for TensorBoard
    assert "[tiny] failed 003-resnet20-boom-t0.3-s0" in resumed.stdout
    assert "restart" not in resumed.stdout  # a trial that raised is recorded as failed, never retried


def test_serial_executor_is_ray_free_and_gives_the_same_records(ray_sweep, spaces, tmp_path) -> None:
    sweep, _, _ = ray_sweep
    code = ("import sys; from harness.cli import main; "
            f"rc = main(['sweep', {str(spaces / 'tiny.yaml')!r}, '--executor', 'serial', '--results-dir', "
            f"{str(tmp_path)!r}]); assert 'ray' not in sys.modules, 'serial imported ray'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1, proc.stderr  # the boom trial failed
    serial, ray = _records(tmp_path / "tiny"), _records(sweep)
    assert sorted(serial) == sorted(ray)
    for name in ray:
        assert sorted(serial[name]) == sorted(ray[name]), name  # same schema
        assert _numbers(serial[name]) == _numbers(ray[name]), name  # same numbers (same seed, CPU, 1 thread)
        assert serial[name]["executor"] == "serial"


def _interrupt(monkeypatch, name: str, when) -> None:
    """Make trial ``name`` raise KeyboardInterrupt (as Ctrl-C would) at the first report matching ``when``."""
    real = trainable.execute_trial
    fired = []

    def emit(metrics, state_path):
        if not fired and when(metrics):
            fired.append(metrics)
            raise KeyboardInterrupt

    def execute(ctx, trial, emit_=None, checkpoint_dir=None):
        return real(ctx, trial, emit if trial.name == name else emit_, checkpoint_dir)

    monkeypatch.setattr(trainable, "execute_trial", execute)


def test_serial_interrupt_resume_and_nan_failure(ray_sweep, spaces, tmp_path, monkeypatch, capsys) -> None:
    sweep, _, _ = ray_sweep
    _interrupt(monkeypatch, LAASP_TRIAL, lambda m: m["phase"] == "prune" and m.get("step") == 2)
    args = [str(spaces / "tiny_nan.yaml"), "--executor", "serial", "--results-dir", str(tmp_path)]
    assert main(["sweep", *args]) == 130
    assert "--resume tiny_nan" in capsys.readouterr().err
    assert sorted(_records(tmp_path / "tiny_nan")) == ["000-resnet20-unpruned-s0"]
    assert (tmp_path / "tiny_nan" / "trials" / LAASP_TRIAL / "state.pt").exists()
    monkeypatch.undo()
    assert main(["sweep", "--resume", "tiny_nan", "--results-dir", str(tmp_path)]) == 1  # boom and the NaN trial
    records = _records(tmp_path / "tiny_nan")
    assert len(records) == 5
    nan = records["004-resnet20-random-t0.3-s0"]
    assert nan["status"] == "failed" and "training diverged" in nan["error"] and nan["options"]["lr"] == 1e9
    laasp = records[LAASP_TRIAL]
    assert laasp["resumed"] == [{**laasp["resumed"][0], "from": "state file", "stage": "prune"}]
    reference = _records(sweep)  # the Ray run of the same trials
    for name in ("000-resnet20-unpruned-s0", LAASP_TRIAL, "002-resnet20-l1_uniform-t0.3-s0"):
        assert _numbers(records[name]) == _numbers(reference[name]), name


SEARCH_FIXED = COMMON.replace("epochs: 4", "epochs: {epochs}").replace("  target_flops: 0.3\n", "") + """
  pruner: laasp
pruners:
  laasp: {{subset_size: 32, recover_flop: 0.3}}
seeds: [0, 1]
search:
"""


def _indent(block: str) -> str:
    """A dedented block as the body of ``search:`` (two spaces in)."""
    return textwrap.indent(textwrap.dedent(block).strip("\n"), "  ") + "\n"


def test_serial_pareto_search_interrupted_and_resumed(tmp_path, monkeypatch, capsys) -> None:
    import optuna

    space = tmp_path / "pareto.yaml"
    space.write_text(SEARCH_FIXED.format(epochs=2) + _indent("""
        objective: [top1, flops_reduction]
        num_samples: 3
        repeat: {top: 1}
        space:
          criteria: {subset: [l1, l2, eucl, cos], encoding: string}
          step_scale: {low: 4.0, high: 8.0}
          target_flops: {low: 0.2, high: 0.4}
          recover_epoch: 0
    """))
    _interrupt(monkeypatch, "s0001", lambda m: m["phase"] == "train")
    args = ["--executor", "serial", "--results-dir", str(tmp_path / "r")]
    assert main(["sweep", str(space), *args]) == 130
    monkeypatch.undo()
    assert main(["sweep", "--resume", "pareto", *args]) == 0
    sweep = tmp_path / "r" / "pareto"
    records = _records(sweep)
    assert sorted(n for n in records if n.startswith("s")) == ["s0000", "s0001", "s0002"]
    assert len(records) == 4  # and one repeat of the best Pareto trial on seed 1
    study = optuna.load_study(study_name="pareto", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3 and study.metric_names == ["top1", "flops_reduction"]
    for t in study.trials:
        rec = records[f"s{t.number:04d}"]
        assert rec["search"]["number"] == t.number and rec["search"]["values"] == pytest.approx(t.values)
        assert rec["search"]["objective"] == ["top1", "flops_reduction"]
        assert rec["options"]["target_flops"] == pytest.approx(t.params["target_flops"])
    assert records["s0001"]["resumed"] and records["s0001"]["resumed"][0]["from"] == "state file"
    repeat = next(r for n, r in records.items() if n.startswith("r"))
    front = {t.number for t in study.best_trials}
    assert repeat["search"]["repeat_of"] in front and repeat["seed"] == 1 and "number" not in repeat["search"]
    winner = records[f"s{repeat['search']['repeat_of']:04d}"]
    assert {**winner["options"], "seed": 1} == repeat["options"]


def test_ray_search_with_asha(tmp_path) -> None:
    import optuna

    space = tmp_path / "asha.yaml"
    space.write_text(SEARCH_FIXED.format(epochs=3) + _indent("""
        objective: top1
        asha: {grace_period: 1, reduction_factor: 2}
        num_samples: 4
        space:
          criteria: {subset: [l1, l2, eucl, cos]}
          step_scale: {low: 4.0, high: 8.0}
          recover_epoch: {low: 0, high: 1}
          target_flops: 0.3
    """))
    proc = run_cli("sweep", str(space), "--results-dir", str(tmp_path / "r"), timeout=180)
    assert proc.returncode == 0, proc.stderr
    sweep = tmp_path / "r" / "asha"
    records = _records(sweep)
    assert sorted(records) == ["s0000", "s0001", "s0002", "s0003"]
    study = optuna.load_study(study_name="asha", storage=f"sqlite:///{sweep / 'optuna.db'}")
    state = {"ok": "COMPLETE", "failed": "FAIL", "stopped": "PRUNED"}
    assert len(study.trials) == 4
    for t in study.trials:
        rec = records[f"s{t.number:04d}"]
        assert t.state.name == state[rec["status"]], (rec["status"], rec.get("error"))
        if rec["status"] == "ok":
            assert rec["search"]["value"] == pytest.approx(t.value) == pytest.approx(rec["final"]["top1"])
    assert any(r["status"] == "ok" for r in records.values())


def test_serial_unpruned_trial_gets_its_laasp_twins_budget(tmp_path) -> None:
    """epoch_budget: laasp applies to the unpruned baseline too: it trains its LAASP twin's epochs, the
    extra ones at the twin's prune epoch, and its record says where the budget came from."""
    space = tmp_path / "budget.yaml"
    space.write_text(COMMON.replace("epochs: 4", "epochs: 2") + "  epoch_budget: laasp\npruners:\n" + LAASP
                     + "grid:\n  pruner: [none, laasp]\n")
    assert main(["sweep", str(space), "--executor", "serial", "--results-dir", str(tmp_path)]) == 0
    records = _records(tmp_path / "budget")
    laasp, base = records[LAASP_TRIAL], records["000-resnet20-unpruned-s0"]
    assert base["epochs_trained"] == laasp["epochs_trained"] > 2 and base["stage"] == "matched"
    assert base["epoch_budget_from"] == LAASP_TRIAL and base["config"]["budget_epoch"] == 1
    assert [h["phase"] for h in base["history"]] == ["train"] + ["budget"] * (laasp["epochs_trained"] - 2) + ["train"]
