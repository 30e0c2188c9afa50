"""Interrupted runs resume where they stopped: same history, trace and final metrics as one go."""
from __future__ import annotations

import json

import pytest
import torch

from harness.data import DataConfig
from harness.train.engine import OptimConfig
from harness.errors import UserError
from harness.job.run import JobConfig, run_job
from laasp.config import LAASPConfig
from tests.helpers import error_line, one_error, run_cli


class Interrupt(Exception):
    pass


def _config(out, **kw) -> JobConfig:
    laasp = LAASPConfig(target_flops=0.25, prune_epoch=1, recover_epoch=2, recover_flop=0.1, subset_size=64,
                        step_scale=2.0, criteria=("l1", "cos"))
    return JobConfig(model="resnet20", data=DataConfig("digits", train_subset=300, test_subset=100),
                     optim=OptimConfig(lr=0.05, batch_size=64, milestones=(2,)), epochs=3, seed=3, device="cpu",
                     out=str(out), progress=False, pruner="laasp", pruner_config=laasp, **kw)


def _comparable(record: dict) -> dict:
    drop = {"train_time_s", "images_per_s"}
    return {
        "history": [{k: v for k, v in e.items() if k not in drop} for e in record["history"]],
        "trace": [{k: v for k, v in s.items() if k not in ("selection_s", "check_s")} for s in record["trace"]],
        "final": record["final"], "flops": record["flops"], "epochs_trained": record["epochs_trained"],
        "layer_rates": record["layer_rates"], "recoveries": record["recoveries"],
    }


@pytest.fixture(scope="module")
def full_run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("full")


@pytest.fixture(scope="module")
def uninterrupted(full_run_dir):
    return run_job(_config(full_run_dir), state_path=full_run_dir / "state.pt")


@pytest.mark.parametrize("stop_after", [
    lambda e: e["phase"] == "prune" and e["step"] == 2,   # between two LAASP steps
    lambda e: e["phase"] == "recover",                    # in the middle of a 2-epoch recovery
    lambda e: e["phase"] == "finetune",                   # during the final training
], ids=["between-steps", "mid-recovery", "finetune"])
def test_resume_matches_uninterrupted(tmp_path, uninterrupted, stop_after) -> None:
    def report(entry, state_path):
        if stop_after(entry):
            assert state_path is not None and state_path.exists()
            raise Interrupt

    cfg = _config(tmp_path)
    with pytest.raises(Interrupt):
        run_job(cfg, report=report, state_path=tmp_path / "state.pt")
    assert (tmp_path / "state.pt").exists() and not (tmp_path / "record.json").exists()
    resumed = run_job(cfg, state_path=tmp_path / "state.pt")
    assert _comparable(resumed) == _comparable(uninterrupted)
    # wall time covers the interrupted part too, like the phase timings it contains
    assert resumed["wall_time_s"] > sum(resumed["timings"].values())
    assert not (tmp_path / "state.pt").exists()  # cleaned up once the record is written


def test_state_holds_rng_precision_and_scaler(tmp_path) -> None:
    from harness.job.checkpoint import read_checkpoint

    def report(entry, state_path):
        raise Interrupt

    with pytest.raises(Interrupt):
        run_job(_config(tmp_path), report=report, state_path=tmp_path / "state.pt")
    extra = read_checkpoint(tmp_path / "state.pt")["extra_state"]
    assert extra["precisions"] == ["fp32"] and extra["grad_scaler"] is None  # CPU: fp32, no scaler to keep
    assert extra["rng"].dtype == torch.uint8 and "cuda_rng" not in extra  # the CUDA generator only on CUDA


def test_state_written_before_precision_existed_still_resumes(tmp_path, uninterrupted) -> None:
    """Its identity had amp (True: mixed precision where possible) and no deterministic switch."""
    from harness.job.checkpoint import read_checkpoint

    def report(entry, state_path):
        if entry["phase"] == "finetune":
            raise Interrupt

    cfg = _config(tmp_path)
    with pytest.raises(Interrupt):
        run_job(cfg, report=report, state_path=tmp_path / "state.pt")
    payload = read_checkpoint(tmp_path / "state.pt")
    job = payload["meta"]["job"]
    del job["precision"], job["deterministic"]
    job["amp"] = True
    torch.save(payload, tmp_path / "state.pt")
    assert _comparable(run_job(cfg, state_path=tmp_path / "state.pt")) == _comparable(uninterrupted)


def test_state_of_other_settings_is_refused(tmp_path) -> None:
    def report(entry, state_path):
        raise Interrupt

    with pytest.raises(Interrupt):
        run_job(_config(tmp_path), report=report, state_path=tmp_path / "state.pt")
    other = _config(tmp_path, epoch_budget=5)
    with pytest.raises(UserError, match="other settings"):
        run_job(other, state_path=tmp_path / "state.pt")


def test_finished_run_is_not_overwritten(tmp_path) -> None:
    out = tmp_path / "done"
    proc = run_cli("train", "--model", "resnet20", "--epochs", "1", "--train-subset", "200", "--out", str(out),
                   "--quiet")
    assert proc.returncode == 0, proc.stderr
    before = (out / "record.json").read_text()
    proc = run_cli("train", "--model", "resnet20", "--epochs", "1", "--train-subset", "200", "--out", str(out))
    assert "already exists" in error_line(proc)
    assert (out / "record.json").read_text() == before


def test_epoch_budget_and_three_stage_mode(tmp_path, uninterrupted) -> None:
    # a baseline matched to the LAASP run's total epochs (recovery included)
    laasp_record = tmp_path / "laasp.json"
    laasp_record.write_text(json.dumps({"epochs_trained": uninterrupted["epochs_trained"]}))
    common = ["--model", "resnet20", "--dataset", "digits", "--train-subset", "300", "--test-subset", "100",
              "--seed", "3", "--device", "cpu", "--quiet"]
    proc = run_cli("run", "--pruner", "l1_uniform", "--epochs", "3", "--prune-epoch", "1", "--target-flops", "0.25",
                   "--match-epochs", str(laasp_record), "--out", str(tmp_path / "b"), *common)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "b" / "record.json").read_text())
    assert rec["epochs_trained"] == uninterrupted["epochs_trained"] > 3
    assert [h["phase"] for h in rec["history"]].count("budget") == uninterrupted["epochs_trained"] - 3
    # three-stage: train, then prune that checkpoint at once and fine-tune
    proc = run_cli("train", "--epochs", "1", "--out", str(tmp_path / "t"), *common)
    assert proc.returncode == 0, proc.stderr
    trained = json.loads((tmp_path / "t" / "record.json").read_text())
    proc = run_cli("run", "--pruner", "gm_uniform", "--from-checkpoint", str(tmp_path / "t" / "checkpoint.pt"),
                   "--target-flops", "0.3", "--epochs", "1", "--lr", "0.01", "--out", str(tmp_path / "f"), *common)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "f" / "record.json").read_text())
    assert rec["pre_prune"]["top1"] == pytest.approx(trained["final"]["top1"])
    assert [h["phase"] for h in rec["history"]] == ["finetune"]
    assert 0.3 <= rec["flops"]["reduction"] <= 0.305
    assert rec["init"]["epochs_trained"] == 1
    proc = run_cli("run", "--pruner", "gm_uniform", "--from-checkpoint", str(tmp_path / "t" / "checkpoint.pt"),
                   "--target-flops", "0.3", "--epochs", "1", "--model", "resnet32", "--dataset", "digits")
    assert "--from-checkpoint holds resnet20" in error_line(proc)


def test_record_keeps_the_best_epoch_of_the_final_phase(uninterrupted) -> None:
    """The papers' number beside ours: the best test top-1 of the fine-tuning epochs, and where."""
    from harness.job.records import best_epoch

    best = uninterrupted["best"]
    finetune = [e for e in uninterrupted["history"] if e["phase"] == "finetune"]
    peak = max(e["test_top1"] for e in finetune)
    assert best == best_epoch(uninterrupted["history"], pruned=True)
    assert best["top1"] == peak >= uninterrupted["final"]["top1"] and best["phase"] == "finetune"
    assert best["epochs_considered"] == len(finetune)
    at = next(e for e in finetune if e["epoch"] == best["epoch"])
    assert at["test_top1"] == peak and best["top5"] == at["test_top5"]


def test_recovery_follows_the_schedule_like_the_authors(tmp_path, uninterrupted) -> None:
    """Each 2-epoch recovery trains at the schedule's rate of prune_epoch (1) and prune_epoch + 1 (2,
    past the milestone): the authors' scripts call their training loop for those epochs."""
    from dataclasses import replace

    recover = [(e["schedule_epoch"], e["lr"]) for e in uninterrupted["history"] if e["phase"] == "recover"]
    assert recover and recover == [(1, pytest.approx(0.05)), (2, pytest.approx(0.005))] * (len(recover) // 2)
    assert uninterrupted["config"]["pruner_config"]["recover_lr"] == "schedule"  # the policy, in every record
    # the rule of records made before, kept so they can be reproduced: every recovery epoch at prune_epoch's rate
    cfg = _config(tmp_path)
    old = replace(cfg, epochs=2, pruner_config=replace(cfg.pruner_config, recover_lr="prune_epoch", target_flops=0.12,
                                                       subset_size=16, criteria=("l1",)))
    rec = run_job(old)
    recover = [(e["schedule_epoch"], e["lr"]) for e in rec["history"] if e["phase"] == "recover"]
    assert recover == [(1, pytest.approx(0.05))] * 2 and rec["config"]["pruner_config"]["recover_lr"] == "prune_epoch"


def test_unpruned_baseline_gets_the_same_epoch_budget(tmp_path, uninterrupted, full_run_dir) -> None:
    """`train --match-epochs RECORD`: the unpruned run trains as many epochs as the LAASP run, the extra
    ones where a pruned run adds its own (after the prune epoch, at its rate); it resumes exactly."""

    from harness.job.options import job_config_from_options

    record = full_run_dir / "record.json"  # the record stores its own folder as "." (portable paths)
    total = uninterrupted["epochs_trained"]
    common = ["--model", "resnet20", "--dataset", "digits", "--train-subset", "300", "--test-subset", "100",
              "--seed", "3", "--epochs", "3", "--lr", "0.05", "--batch-size", "64", "--milestones", "2", "--quiet"]
    proc = run_cli("train", "--match-epochs", str(record), "--out", str(tmp_path / "u"), *common)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "u" / "record.json").read_text())
    assert rec["epochs_trained"] == total > 3
    assert rec["config"]["epoch_budget"] == total and rec["config"]["budget_epoch"] == 1  # the record's prune epoch
    got = [(h["phase"], h["schedule_epoch"], h["lr"]) for h in rec["history"]]
    want = [("train", 0, 0.05)] + [("budget", 1, 0.05)] * (total - 3) + [("train", 1, 0.05), ("train", 2, 0.005)]
    assert got == [(p, e, pytest.approx(lr)) for p, e, lr in want]
    assert rec["best"]["epochs_considered"] == total  # every epoch of an unpruned run
    # interrupted in the budget epochs, resumed: the same run
    cfg = job_config_from_options({"model": "resnet20", "dataset": "digits", "train_subset": 300, "test_subset": 100,
                                   "seed": 3, "epochs": 3, "lr": 0.05, "batch_size": 64, "milestones": (2,),
                                   "quiet": True, "match_epochs": str(record), "out": str(tmp_path / "r"),
                                   "device": "cpu"})

    def report(entry, state_path):
        if entry["phase"] == "budget":
            raise Interrupt

    with pytest.raises(Interrupt):
        run_job(cfg, report=report, state_path=tmp_path / "r" / "state.pt")
    resumed = run_job(cfg, state_path=tmp_path / "r" / "state.pt")
    strip = lambda r: [{k: v for k, v in h.items() if k not in ("train_time_s", "images_per_s")} for h in r["history"]]
    assert strip(resumed) == strip(rec) and resumed["final"] == rec["final"]


@pytest.mark.parametrize("args,words", [
    (["train", "--budget-epoch", "1"], "--budget-epoch places the extra epochs"),
    (["train", "--epoch-budget", "2"], "below --epochs"),
    (["run", "--pruner", "l1_uniform", "--target-flops", "0.2", "--epoch-budget", "5", "--budget-epoch", "1"],
     "--budget-epoch is for unpruned runs"),
])
def test_budget_errors(args, words, capsys) -> None:
    assert words in one_error(capsys, [*args, "--model", "resnet20", "--epochs", "3"])
