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
from tests.helpers import error_line, run_cli


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
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return run_job(_config(out), state_path=out / "state.pt")


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
    proc = run_cli("run", "--pruner", "fpgm", "--from-checkpoint", str(tmp_path / "t" / "checkpoint.pt"),
                   "--target-flops", "0.3", "--epochs", "1", "--lr", "0.01", "--out", str(tmp_path / "f"), *common)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "f" / "record.json").read_text())
    assert rec["pre_prune"]["top1"] == pytest.approx(trained["final"]["top1"])
    assert [h["phase"] for h in rec["history"]] == ["finetune"]
    assert 0.3 <= rec["flops"]["reduction"] <= 0.305
    assert rec["init"]["epochs_trained"] == 1
    proc = run_cli("run", "--pruner", "fpgm", "--from-checkpoint", str(tmp_path / "t" / "checkpoint.pt"),
                   "--target-flops", "0.3", "--epochs", "1", "--model", "resnet32", "--dataset", "digits")
    assert "--from-checkpoint holds resnet20" in error_line(proc)
