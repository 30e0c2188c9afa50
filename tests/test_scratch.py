"""Scratch-E / Scratch-B (Liu et al., ICLR 2019): a pruned run's final architecture trained from random
initialisation, from a record, a checkpoint or a sweep twin (`harness.job.scratch`)."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch

from harness.cli import main
from harness.errors import UserError
from harness.job.checkpoint import describe_architecture, load_checkpoint, read_checkpoint
from harness.job.run import run_job
from harness.job.scratch import build_scratch_model, scratch_epochs, scratch_job_config
from harness.models import build_model, reinit_weights
from harness.prune.flops import count_cost
from tests.helpers import sweep_records

RESNET20_DIGITS_FLOPS = 2532992  # 1x8x8 input
DATA = ["--dataset", "digits", "--train-subset", "200", "--test-subset", "60", "--quiet"]


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished pruned run with per-layer rates of its own (global L1 ranking), 2 epochs."""
    out = tmp_path_factory.mktemp("scratch") / "source"
    assert main(["run", "--pruner", "l1_global", "--model", "resnet20", *DATA, "--epochs", "2", "--prune-epoch", "1",
                 "--target-flops", "0.4", "--lr", "0.05", "--seed", "4", "--out", str(out)]) == 0
    return out


def _record(path):
    return json.loads((path / "record.json").read_text())


@pytest.mark.parametrize("name", ["resnet20", "vgg16", "vgg16_1fc"])
def test_reinit_reproduces_the_constructor(name) -> None:
    """At full width, re-initialising under the same seed gives exactly the built model's weights."""
    torch.manual_seed(5)
    built = build_model(name, 10, 1)
    torch.manual_seed(6)
    again = build_model(name, 10, 1)  # other weights, then re-initialised under the first seed
    torch.manual_seed(5)
    reinit_weights(name, again)
    for key, value in built.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_scratch_builds_the_source_architecture_with_fresh_weights(source, tmp_path) -> None:
    src_model, _ = load_checkpoint(source / "checkpoint.pt")
    runs = {}
    for kind, arch in (("record", source / "record.json"), ("checkpoint", source / "checkpoint.pt")):
        out = tmp_path / kind
        assert main(["scratch", "--arch-from", str(arch), "--budget", "E", "--out", str(out), "--quiet"]) == 0
        runs[kind] = (_record(out), load_checkpoint(out / "checkpoint.pt")[0])
    src = _record(source)
    for record, model in runs.values():
        assert describe_architecture(model) == describe_architecture(src_model)  # every layer's channel counts
        assert record["flops"] == src["flops"] and record["params"] == src["params"]
        assert record["epochs_trained"] == src["epochs_trained"] == 2 and record["seed"] == 4  # E; seed inherited
        assert record["scratch"]["budget"] == "E" and record["scratch"]["source_group"] == "l1_global"
        assert record["pruner"] is None and record["target_flops"] == 0.4
        assert not any(torch.equal(a, b) for a, b in zip(model.state_dict().values(), src_model.state_dict().values())
                       if a.dtype.is_floating_point and a.numel() > 1)
    (_, a), (_, b) = runs.values()  # the same seed from a record or a checkpoint: the same run
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_fresh_weights_are_the_family_init_at_the_pruned_width(source) -> None:
    """Not a slice of the full network's init: the family's init run on the pruned layers (Kaiming
    fan-out uses the pruned channel count)."""
    spec = scratch_job_config({}, source / "record.json", "E").scratch
    torch.manual_seed(0)
    scratch = build_scratch_model(build_model("resnet20", 10, 1), spec, "resnet20", 8, 1)
    torch.manual_seed(0)
    build_model("resnet20", 10, 1)  # the RNG draws of the full network scratch pruned
    rng = torch.get_rng_state()
    expected = load_checkpoint(source / "checkpoint.pt")[0]
    torch.set_rng_state(rng)
    reinit_weights("resnet20", expected)
    for key, value in expected.state_dict().items():
        assert torch.equal(value, scratch.state_dict()[key]), key


def test_scratch_b_epochs_and_resume(source, tmp_path) -> None:
    src = _record(source)
    e, before, after = src["epochs_trained"], src["flops"]["before"], src["flops"]["after"]
    cfg = scratch_job_config({"out": str(tmp_path / "full"), "quiet": True}, source / "record.json", "B")
    assert cfg.epochs == (2 * e * before + after) // (2 * after) == round(e * before / after) > e
    full = run_job(cfg, state_path=tmp_path / "full" / "state.pt")
    assert full["scratch"]["epochs"] == full["epochs_trained"] == cfg.epochs
    assert full["scratch"]["flops_ratio"] == pytest.approx(before / after)

    def stop(entry, state_path):
        raise Interrupt

    cfg = scratch_job_config({"out": str(tmp_path / "cut"), "quiet": True}, source / "record.json", "B")
    with pytest.raises(Interrupt):
        run_job(cfg, report=stop, state_path=tmp_path / "cut" / "state.pt")
    assert read_checkpoint(tmp_path / "cut" / "state.pt")["extra_state"]["epochs_trained"] == 1
    resumed = run_job(cfg, state_path=tmp_path / "cut" / "state.pt")
    strip = ("train_time_s", "images_per_s")
    assert [{k: v for k, v in h.items() if k not in strip} for h in resumed["history"]] == \
        [{k: v for k, v in h.items() if k not in strip} for h in full["history"]]
    assert resumed["final"] == full["final"]


def _hand_made(path, **kw):
    record = {"model": "resnet20", "dataset": "digits", "pruner": "l1_uniform", "seed": 0, "final": {"top1": 50.0},
              "flops": {"before": 1000, "after": 400}, "epochs_trained": 5, "target_flops": 0.6,
              "layer_rates": {"layer1.0.conv1": 0.5},
              "config": {"data": {"dataset": "digits", "train_subset": 100}}, **kw}
    path.write_text(json.dumps(record))
    return path


def test_scratch_b_follows_its_definition_on_a_hand_made_record(tmp_path) -> None:
    source = _hand_made(tmp_path / "r.json")  # FLOPs ratio 2.5, E = 5: B = 12.5 rounded half up
    assert scratch_epochs("B", 5, 1000, 400) == 13 and scratch_epochs("E", 5, 1000, 400) == 5
    b = scratch_job_config({}, source, "B")
    assert b.epochs == 13 and b.optim.milestones == (4, 8, 10, 12)  # the recipe's fractions of 13
    assert b.data.train_subset == 100 and b.scratch.target_flops == 0.6  # the source's data settings
    assert scratch_job_config({}, source, "E").epochs == 5
    assert scratch_job_config({"milestones": (3,)}, source, "B").optim.milestones == (3,)  # the user's kept
    init = _hand_made(tmp_path / "three_stage.json", init={"epochs_trained": 3})
    assert scratch_job_config({}, init, "E").epochs == 8  # the start checkpoint's epochs count too


def _module_file(tmp_path):
    torch.save(build_model("resnet20", 10, 1), tmp_path / "module.pt")  # a whole pickled module
    return tmp_path / "module.pt"


@pytest.mark.parametrize("make, flags, message", [
    (lambda s, t: s / "record.json", ["--model", "resnet32"], "is a resnet20 run on digits, but --model is resnet32"),
    (lambda s, t: s / "checkpoint.pt", ["--dataset", "cifar10"], "but --dataset is cifar10"),
    (lambda s, t: _module_file(t), [], "cannot load"),
    (lambda s, t: _hand_made(t / "r.json", pruner=None), [], "an unpruned run has no pruned architecture"),
    (lambda s, t: _hand_made(t / "r.json", flops={"before": RESNET20_DIGITS_FLOPS, "after": 400}), [],
     "FLOPs, the source run 400; its record does not describe"),
    (lambda s, t: _hand_made(t / "r.json"), [], "the unpruned resnet20 has 2532992 FLOPs on this data but 1000"),
    (lambda s, t: s / "record.json", ["--epochs", "3"], "--epochs: a scratch run's epochs are set by --budget"),
], ids=["model", "dataset", "pickled-module", "unpruned", "flops-mismatch", "other-input", "epochs"])
def test_bad_sources_are_refused(source, tmp_path, capsys, make, flags, message) -> None:
    arch = make(source, tmp_path)
    assert main(["scratch", "--arch-from", str(arch), "--budget", "E", *flags, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not (tmp_path / "o").exists()


SPACE = """
fixed: {model: resnet20, dataset: digits, train_subset: 200, test_subset: 60, epochs: 2, prune_epoch: 1,
        target_flops: 0.3, lr: 0.05, device: cpu, recover_epoch: 1, recover_flop: 0.1, step_scale: 3.0}
pruners:
  laasp: {subset_size: 32}
grid:
  - pruner: [none, laasp]
  - {pruner: l1_uniform, schedule: iterative}
  - {arch_from: laasp, scratch: [E, B]}
"""


def test_sweep_scratch_trials_train_their_laasp_twins_architecture(tmp_path, capsys) -> None:
    """A tiny digits sweep with an iterative control and arch_from, end to end."""
    (tmp_path / "s.yaml").write_text(SPACE)
    assert main(["sweep", str(tmp_path / "s.yaml"), "--executor", "serial", "--results-dir", str(tmp_path)]) == 0
    records = sweep_records(tmp_path / "s")
    twin = records["001-resnet20-laasp-t0.3-s0"]
    iterative = records["002-resnet20-l1_uniform-iterative-t0.3-s0"]
    assert iterative["status"] == "ok" and iterative["config"]["pruner_config"]["schedule"] == "iterative"
    assert len(iterative["trace"]) > 1 and iterative["recoveries"] >= 1 and iterative["target_reached"]
    e, b = records["003-resnet20-scratchE-laasp-t0.3-s0"], records["004-resnet20-scratchB-laasp-t0.3-s0"]
    for rec, budget in ((e, "E"), (b, "B")):
        assert rec["status"] == "ok" and rec["stage"] == "scratch" and rec["arch_from_trial"] == twin["trial_id"]
        assert rec["scratch"]["budget"] == budget and rec["scratch"]["source_epochs"] == twin["epochs_trained"]
        assert rec["flops"] == twin["flops"] and rec["target_flops"] == 0.3
    assert e["epochs_trained"] == twin["epochs_trained"]
    ratio = twin["flops"]["before"] / twin["flops"]["after"]
    assert b["epochs_trained"] == round(twin["epochs_trained"] * ratio) == b["scratch"]["epochs"]
    capsys.readouterr()
    assert main(["table", str(tmp_path / "s")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split("|")[3].strip() for line in lines if line.startswith("| resnet20")]
    assert sorted(rows) == sorted(["unpruned", "laasp", "l1_uniform@iterative", "scratch-B[laasp]", "scratch-E[laasp]"])


@pytest.mark.parametrize("grid, message", [
    ("  - {pruner: l1_uniform}\n  - {arch_from: laasp, scratch: E}\n", "the plan has no laasp trial"),
    ("  - {pruner: laasp, recover_epoch: [1, 2]}\n  - {arch_from: laasp, scratch: E}\n", "the plan has 2 ("),
    ("  - {pruner: [laasp], arch_from: laasp, scratch: E}\n", "put arch_from and scratch in a grid block of their own"),
    ("  - {pruner: laasp}\n  - {arch_from: laasp}\n", "needs both arch_from"),
], ids=["no-twin", "two-twins", "with-a-pruner", "no-budget"])
def test_plan_refuses_scratch_trials_without_one_twin(tmp_path, grid, message) -> None:
    from harness.sweep.plan import plan_grid
    from harness.sweep.space import load_space

    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""\
        fixed: {model: resnet20, epochs: 2, prune_epoch: 1, target_flops: 0.3}
        grid:
        """) + grid)
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        plan_grid(load_space(path))


def test_a_scratch_trial_whose_twin_failed_fails_in_its_own_row(tmp_path) -> None:
    from harness.job.groups import group_of
    from harness.sweep.space import Trial
    from harness.sweep.trainable import SweepContext, execute_trial

    ctx = SweepContext("s", str(tmp_path))
    ctx.records.mkdir(parents=True)
    twin = {"status": "failed", "error": "boom", "model": "resnet20", "pruner": "laasp",
            "config": {"pruner_config": {"criteria": ["l1"]}}}
    ctx.record_path("001-twin").write_text(json.dumps(twin))
    options = {"model": "resnet20", "epochs": 2, "target_flops": 0.3, "arch_from": "laasp", "scratch": "B",
               "seed": 0, "pruner": None}
    record = execute_trial(ctx, Trial("002-scratch", options, "scratch", arch_from_trial="001-twin"))
    assert record["status"] == "failed" and "architecture source 001-twin failed (boom)" in record["error"]
    assert group_of(record) == "scratch-B[laasp[l1]]" and record["target_flops"] == 0.3


def test_pool_variants_are_an_axis_and_the_registered_pool_is_the_twin(tmp_path) -> None:
    """An ablation's laasp[l1] and laasp[eucl] beside laasp: baselines and scratch trials take the
    trial with LAASP's registered pool as their twin; two trials with one pool stay ambiguous."""
    from harness.sweep.plan import plan_grid
    from harness.sweep.space import load_space

    path = tmp_path / "s.yaml"
    head = "fixed: {model: resnet20, epochs: 2, prune_epoch: 1, target_flops: 0.3, epoch_budget: laasp}\ngrid:\n"
    path.write_text(head + "  - {pruner: laasp, criteria: [l1, eucl, l1+l2+eucl+cos]}\n"
                           "  - {pruner: [none, l1_uniform]}\n  - {arch_from: laasp, scratch: E}\n")
    trials = {t.name: t for t in plan_grid(load_space(path))}
    plain = next(n for n, t in trials.items() if t.options.get("criteria") == ("l1", "l2", "eucl", "cos"))
    assert trials["004-resnet20-l1_uniform-t0.3-s0"].budget_from == plain
    assert trials["005-resnet20-scratchE-laasp-t0.3-s0"].arch_from_trial == plain
    assert trials["003-resnet20-unpruned-s0"].budget_from.count("laasp") == 3  # the largest of all its LAASP twins
    path.write_text(head + "  - {pruner: laasp, criteria: [l1, eucl]}\n  - {pruner: l1_uniform}\n")
    with pytest.raises(UserError, match="the plan has 2 LAASP trials"):
        plan_grid(load_space(path))
