"""The iterative schedule of the one-shot baselines (``schedule: iterative``): LAASP's FLOPs steps
and recovery rule with the pruner's own plan per step. Reaches the target, recovers where LAASP's
rule says (the same code as LAASP), counts its epochs, keeps the cap relative to the original
channels, resumes exactly, and is reachable from the CLI and a sweep."""
from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from harness.cli import main
from harness.data import DataConfig
from harness.errors import UserError
from harness.job.options import pruner_config_from_options
from harness.job.run import JobConfig, run_job
from harness.models import build_model
from harness.prune.plugins import load_builtin_pruners
from harness.prune.pruner import PRUNERS
from harness.prune.recovery import Recovery, recovery_due
from harness.results.load import group_of
from harness.train.engine import OptimConfig
from tests.helpers import deterministic, error_line, run_cli, sweep_records
from tests.pruner_ctx import FakeCtx

load_builtin_pruners()

ONE_SHOT = ("l1_uniform", "gm_uniform", "random", "l1_global", "pfec", "hrank", "slimming")
SMALL = {"hrank": {"rank_images": 4}}  # few images for the ranks: the schedule is what is tested


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Interrupt(Exception):
    pass


class StepCtx(FakeCtx):
    """A FakeCtx the iterative loop can run in when no recovery is due (recover_epoch 0)."""

    pruner_state = None

    def checkpoint(self, entry=None) -> None:
        self.reports.append(entry)

    def train(self, *args, **kwargs) -> None:
        raise AssertionError("recover_epoch 0: nothing to train")


def step_prune(pruner: str, model, size: int, target: float, **config) -> tuple[dict, StepCtx]:
    ctx = StepCtx(model, size, model_name="resnet20")
    cfg = PRUNERS.get(pruner).Config(target_flops=target, schedule="iterative", recover_epoch=0,
                                     **{**SMALL.get(pruner, {}), **config})
    cfg.validate()
    return PRUNERS.get(pruner)(cfg).prune(ctx), ctx


def job(out, pruner: str = "random", **config) -> JobConfig:
    settings = dict(target_flops=0.3, prune_epoch=1, max_prune_rate=0.75, schedule="iterative", step_scale=5.0,
                    recover_flop=0.1, recover_epoch=2)
    pcfg = PRUNERS.get(pruner).Config(**{**settings, **config})
    return JobConfig(model="resnet20", data=DataConfig("digits", train_subset=200, test_subset=100),
                     optim=OptimConfig(lr=0.05, batch_size=64, milestones=(2,)), epochs=2, seed=3, device="cpu",
                     out=str(out), progress=False, pruner=pruner, pruner_config=pcfg)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``random`` (its scores draw from a stream that must resume too) on the iterative schedule."""
    out = tmp_path_factory.mktemp("iterative")
    return run_job(job(out), state_path=out / "state.pt")


# ------------------------------------------------------------------------- the schedule
@pytest.mark.parametrize("pruner", ONE_SHOT)
def test_every_one_shot_baseline_reaches_the_target_in_steps(pruner: str) -> None:
    torch.manual_seed(0)
    fields, ctx = step_prune(pruner, build_model("resnet20", 10, 3), 32, 0.3, step_scale=8.0)
    trace = fields["trace"]
    assert fields["target_reached"] and 0.3 <= ctx.reduction() < 0.305
    assert len(trace) >= 4 and [s["step"] for s in trace] == list(range(1, len(trace) + 1))
    assert all(s["layer"] == "*" and s["removed"] > 0 for s in trace)
    reductions = [s["flops_reduction"] for s in trace]
    assert reductions == sorted(reductions) and reductions[-1] == pytest.approx(ctx.reduction())
    for before, step in zip([0.0, *reductions], trace):  # each step: its slice, landing just above it
        assert step["step_target"] == pytest.approx(min(0.3, before + 0.08))
        assert step["step_target"] <= step["flops_reduction"] < step["step_target"] + 0.0051
    assert fields["recoveries"] == 0 and sum(fields["removed_per_criterion"].values()) == sum(
        s["removed"] for s in trace)


def test_the_cap_stays_relative_to_the_original_channels() -> None:
    """l1_global piles its ranking onto a few groups: across steps a cap counted from the channels
    left would let a group lose 25% of what is left each step, far past 25% of what it had."""
    cap = 0.25
    fields, _ = step_prune("l1_global", build_model("resnet20", 10, 3), 32, 0.4, max_prune_rate=cap, step_scale=4.0)
    original = {name: c for name, c in _filters(build_model("resnet20", 10, 3)).items()}
    assert fields["target_reached"]
    rates = fields["layer_rates"]
    assert max(rates.values()) <= cap + 1e-9
    at_cap = [name for name, r in rates.items() if r == int(cap * original[name]) / original[name]]
    assert at_cap, rates  # the cap did bind


def test_uniform_slices_continue_one_ratio_of_the_original_channels() -> None:
    """Step by step, l1_uniform ends at (nearly) the one-shot structure: the ratio is of each layer's
    original channels, not of what is left (which would drift toward equal widths)."""
    once, _ = prune_once("l1_uniform", 0.5)
    steps, _ = step_prune("l1_uniform", build_model("resnet20", 10, 3), 32, 0.5, step_scale=5.0)
    original = _filters(build_model("resnet20", 10, 3))
    for name, rate in steps["layer_rates"].items():
        assert abs(rate - once["layer_rates"][name]) <= 1.5 / original[name], name
    assert steps["uniform_ratio"] == pytest.approx(once["uniform_ratio"], abs=0.02)


def prune_once(pruner: str, target: float) -> tuple[dict, FakeCtx]:
    ctx = FakeCtx(build_model("resnet20", 10, 3), 32)
    cfg = PRUNERS.get(pruner).Config(target_flops=target)
    cfg.validate()
    return PRUNERS.get(pruner)(cfg).prune(ctx), ctx


def _filters(model) -> dict[str, int]:
    from harness.prune.prunable import PrunableNetwork

    return {layer.name: layer.original_filters for layer in PrunableNetwork(model, 32, 3).layers}


# ------------------------------------------------------------------------- recovery: LAASP's rule, LAASP's code
def test_recovery_rule_and_epochs() -> None:
    trained = []
    ctx = SimpleNamespace(pruner_state=None, config=SimpleNamespace(optim=SimpleNamespace(lr_at=lambda e: 0.1 / (e + 1))),
                          train=lambda epochs, phase, **kw: trained.append((epochs, phase, kw)))
    cfg = SimpleNamespace(prune_epoch=5, recover_epoch=2, recover_flop=0.1, recover_lr="schedule")
    state: dict = {}
    recovery = Recovery(ctx, cfg, state)
    started = []
    for reduction in (0.05, 0.09, 0.105, 0.2, 0.21, 0.3):
        started.append(recovery.after_step(reduction))
        recovery.run()
    assert started == [False, False, True, False, True, False] and recovery.count == 2
    assert [(t[0], t[1], t[2]["fresh_optimizer"], t[2]["fixed_lr"]) for t in trained] == [
        ([5], "recover", True, 0.1 / 6), ([6], "recover", False, 0.1 / 7)] * 2
    assert state == {"last_recovery": 0.21, "recoveries": 2, "recover_left": 0} and ctx.pruner_state is state


def test_recovers_where_laasps_rule_says_and_counts_its_epochs(run) -> None:
    trace, cfg = run["trace"], run["config"]["pruner_config"]
    assert run["target_reached"] and 0.3 <= run["flops"]["reduction"] < 0.305
    assert cfg["schedule"] == "iterative" and group_of(run) == "random@iterative"
    due, last = [], 0.0
    for step in trace:  # the rule replayed on the trace's FLOPs reductions
        due.append(recovery_due(step["flops_reduction"], last, cfg["recover_flop"], cfg["recover_epoch"]))
        last = step["flops_reduction"] if due[-1] else last
    assert run["recoveries"] == sum(due) >= 2
    # a step's recovery epochs sit between it and the next step in the history
    positions = [s["epochs_trained"] for s in trace] + [run["epochs_trained"] - 1]  # 1 finetune epoch after pruning
    for i, recovered in enumerate(due):
        assert positions[i + 1] - positions[i] == (cfg["recover_epoch"] if recovered else 0)
    phases = [h["phase"] for h in run["history"]]
    assert phases == ["train"] + ["recover"] * (cfg["recover_epoch"] * sum(due)) + ["finetune"]
    assert run["epochs_trained"] == 2 + run["recoveries"] * cfg["recover_epoch"]


def test_same_recoveries_as_laasp_when_every_step_recovers(tmp_path) -> None:
    """With recover_flop below every step's size, both recover after each step: LAASP's count is its
    step count, the control's its own, through the same rule; epochs = schedule + recoveries x epochs."""
    common = dict(target_flops=0.2, prune_epoch=1, step_scale=5.0, recover_flop=0.01, recover_epoch=1)
    laasp = run_job(_laasp_job(tmp_path / "l", common))
    control = run_job(job(tmp_path / "c", "l1_uniform", **common))
    for rec in (laasp, control):
        assert rec["recoveries"] == len(rec["trace"]) >= 3
        assert rec["epochs_trained"] == 2 + rec["recoveries"] * 1
        assert [h["phase"] for h in rec["history"]].count("recover") == rec["recoveries"]


def _laasp_job(out, common: dict) -> JobConfig:
    from laasp.config import LAASPConfig

    return replace(job(out, "l1_uniform"), pruner="laasp",
                   pruner_config=LAASPConfig(max_prune_rate=0.75, subset_size=32, criteria=("l1",), **common))


# ------------------------------------------------------------------------- resume
@pytest.mark.parametrize("stop_after", [
    lambda e: e["phase"] == "prune" and e["step"] == 2,   # between two steps
    lambda e: e["phase"] == "recover",                    # in the middle of a 2-epoch recovery
], ids=["between-steps", "mid-recovery"])
def test_resume_gives_the_identical_record(tmp_path, run, stop_after) -> None:
    def report(entry, state_path):
        if stop_after(entry):
            raise Interrupt

    with pytest.raises(Interrupt):
        run_job(job(tmp_path), report=report, state_path=tmp_path / "state.pt")
    resumed = run_job(job(tmp_path), state_path=tmp_path / "state.pt")
    assert deterministic(resumed) == deterministic(run)


# ------------------------------------------------------------------------- settings
def test_settings_come_from_the_recipe_and_bad_combinations_are_refused() -> None:
    base = {"pruner": "l1_uniform", "model": "resnet20", "target_flops": 0.3, "schedule": "iterative"}
    cfg = pruner_config_from_options(base)
    assert (cfg.step_rule, cfg.step_scale, cfg.recover_flop, cfg.recover_epoch, cfg.recover_lr) == (
        "flops", 1.0, 0.02, 6, "schedule")  # LAASP's own, from the ResNet recipe
    cfg.validate()
    vgg = pruner_config_from_options({**base, "model": "vgg16"})
    with pytest.raises(UserError, match="--step-rule flops"):  # the VGG recipe's ratio step
        vgg.validate()
    vgg = pruner_config_from_options({**base, "model": "vgg16", "step_rule": "flops"})
    vgg.validate()
    assert vgg.step_scale == 1.0 and vgg.recover_epoch == 1
    with pytest.raises(UserError, match="hand-set --rates"):
        pruner_config_from_options({**base, "pruner": "pfec", "target_flops": None, "rates": (0.3,)}).validate()
    with pytest.raises(UserError, match="has its own schedule"):
        pruner_config_from_options({**base, "pruner": "sfp"})
    with pytest.raises(UserError, match="unknown schedule"):
        PRUNERS.get("l1_uniform").Config(target_flops=0.3, schedule="sometimes").validate()
    notes = []
    pruner_config_from_options({**base, "schedule": None, "recover_epoch": 2}, note=notes.append)
    assert notes == ["note: l1_uniform does not use --recover-epoch"]  # one-shot reads no recovery setting


def test_one_shot_resume_identity_leaves_out_the_iterative_settings() -> None:
    cfg = PRUNERS.get("l1_uniform").Config(target_flops=0.3, prune_epoch=1)
    assert cfg.identity() == {"target_flops": 0.3, "prune_epoch": 1, "max_prune_rate": 1.0}  # as before them
    assert PRUNERS.get("l1_uniform").Config(target_flops=0.3, schedule="iterative").identity()["schedule"] == "iterative"


# ------------------------------------------------------------------------- CLI and sweep
COMMON = ["--model", "resnet20", "--dataset", "digits", "--train-subset", "200", "--test-subset", "100",
          "--device", "cpu", "--quiet", "--epochs", "2", "--prune-epoch", "1", "--target-flops", "0.2"]


def test_cli_runs_the_iterative_schedule_and_refuses_bad_combinations(tmp_path, capsys) -> None:
    proc = run_cli("run", "--pruner", "l1_uniform", "--schedule", "iterative", "--step-scale", "5",
                   "--recover-flop", "0.1", "--recover-epoch", "1", "--out", str(tmp_path / "r"), *COMMON)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "r" / "record.json").read_text())
    assert rec["config"]["pruner_config"]["schedule"] == "iterative" and group_of(rec) == "l1_uniform@iterative"
    assert len(rec["trace"]) >= 4 and rec["recoveries"] >= 1 and rec["target_reached"]
    assert "error: --schedule iterative takes FLOPs steps only" in error_line(
        run_cli("run", "--pruner", "l1_uniform", "--schedule", "iterative", "--step-rule", "ratio", *COMMON))
    assert main(["run", "--pruner", "sfp", "--schedule", "iterative", *COMMON]) == 2
    assert "sfp has its own schedule" in capsys.readouterr().err


def test_sweep_grid_with_an_iterative_block(tmp_path) -> None:
    space = tmp_path / "iter.yaml"
    space.write_text(
        "fixed: {model: resnet20, dataset: digits, train_subset: 200, test_subset: 100, epochs: 2, prune_epoch: 1,\n"
        "        target_flops: 0.2, lr: 0.05, device: cpu}\n"
        "grid:\n"
        "  - {pruner: [l1_uniform, l1_global], schedule: iterative, step_scale: 10.0, recover_flop: 0.1,\n"
        "     recover_epoch: 1}\n"
        "  - {pruner: l1_uniform}\n")
    assert main(["sweep", str(space), "--executor", "serial", "--results-dir", str(tmp_path)]) == 0
    records = sweep_records(tmp_path / "iter")
    assert sorted(records) == ["000-resnet20-l1_uniform-iterative-t0.2-s0", "001-resnet20-l1_global-iterative-t0.2-s0",
                               "002-resnet20-l1_uniform-t0.2-s0"]
    groups = {group_of(r): r for r in records.values()}
    assert sorted(groups) == ["l1_global@iterative", "l1_uniform", "l1_uniform@iterative"]
    assert len(groups["l1_uniform@iterative"]["trace"]) == 2 and groups["l1_uniform@iterative"]["recoveries"] >= 1
    assert len(groups["l1_uniform"]["trace"]) == 1 and groups["l1_uniform"]["recoveries"] == 0


def test_sweep_sends_the_iterative_settings_only_to_iterative_trials(tmp_path) -> None:
    from harness.sweep.plan import plan_grid
    from harness.sweep.space import load_space

    space = tmp_path / "s.yaml"
    space.write_text("fixed: {model: resnet20, target_flops: 0.3}\n"
                     "pruners:\n  l1_global: {schedule: iterative, recover_epoch: 1}\n"
                     "grid:\n  pruner: [laasp, l1_uniform, l1_global]\n  recover_flop: [0.05, 0.1]\n")
    trials = {(t.options["pruner"], t.options.get("recover_flop")): t.options for t in plan_grid(load_space(space))}
    # one-shot l1_uniform reads no recovery setting: one trial, not one per recover_flop
    assert sorted(trials) == [("l1_global", 0.05), ("l1_global", 0.1), ("l1_uniform", None), ("laasp", 0.05),
                              ("laasp", 0.1)]
    assert trials[("l1_global", 0.1)]["recover_epoch"] == 1 and "schedule" not in trials[("laasp", 0.1)]
    space.write_text("fixed: {model: resnet20}\npruners:\n  l1_uniform: {recover_epoch: 1}\n")
    with pytest.raises(UserError, match="l1_uniform does not use recover_epoch unless schedule: iterative"):
        load_space(space)


def test_a_search_samples_the_iterative_settings_whatever_their_order(tmp_path) -> None:
    """``schedule`` decides whether a one-shot baseline reads step_scale: it is drawn before them."""
    from harness.sweep.sampler import SpaceSampler, _CornerTrial
    from harness.sweep.space import load_space

    space = tmp_path / "s.yaml"
    space.write_text("fixed: {model: resnet20, target_flops: 0.3, pruner: l1_uniform}\n"
                     "search:\n  objective: top1\n  num_samples: 2\n  space:\n"
                     "    step_scale: {low: 2.0, high: 4.0}\n    schedule: {choice: [oneshot, iterative]}\n")
    sampler = SpaceSampler(load_space(space))
    iterative = sampler.options(_CornerTrial(last=True))
    assert iterative["schedule"] == "iterative" and iterative["step_scale"] == 4.0
    assert "step_scale" not in sampler.options(_CornerTrial(last=False))  # one-shot: not drawn, not sent
