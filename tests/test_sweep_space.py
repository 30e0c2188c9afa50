"""Search-space YAML: the shipped spaces validate and plan as documented; bad files fail with
one ``error: file:line: ...`` line (exit 2) before any trial runs."""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import optuna
import pytest

from harness.cli.commands import COMMANDS
from harness.job.options import job_config_from_options, pruner_config_from_options
from harness.errors import UserError
from harness.sweep.plan import job_config, plan_grid, validate_plan, validate_search
from harness.sweep.sampler import SpaceSampler
from harness.sweep.space import load_space
from tests.helpers import REPO, error_line, run_cli

SPACES = REPO / "search_spaces"


def _space(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.mark.parametrize("name", sorted(p.name for p in SPACES.glob("*.yaml")))
def test_shipped_spaces_validate(name, tmp_path) -> None:
    space = load_space(SPACES / name, overrides={"data_root": str(tmp_path)})  # CIFAR: any existing folder
    if space.kind == "grid":
        trials = plan_grid(space)
        validate_plan(space, trials)
        assert len({t.name for t in trials}) == len(trials)
    else:
        validate_search(space)


def test_quick_plan() -> None:
    space = load_space(SPACES / "quick.yaml")
    trials = plan_grid(space)
    assert len(trials) == 10 and space.seeds == [0, 1]
    by_name = {t.name: t for t in trials}
    assert [t.name for t in trials][:5] == ["000-resnet20-unpruned-s0", "001-resnet20-laasp-t0.4-s0",
                                            "002-resnet20-l1_uniform-t0.4-s0", "003-resnet20-fpgm-t0.4-s0",
                                            "004-resnet20-random-t0.4-s0"]
    unpruned = by_name["000-resnet20-unpruned-s0"]
    assert unpruned.options["pruner"] is None and "target_flops" not in unpruned.options
    # the unpruned baseline gets its LAASP twin's budget too, so a drop is not an artefact of budget
    assert unpruned.options["epoch_budget"] == "laasp" and unpruned.stage == "matched"
    assert unpruned.budget_from == "001-resnet20-laasp-t0.4-s0"
    laasp = by_name["001-resnet20-laasp-t0.4-s0"]
    assert laasp.options["recover_epoch"] == 1 and "epoch_budget" not in laasp.options and laasp.stage == "main"
    fpgm = by_name["008-resnet20-fpgm-t0.4-s1"]
    assert "recover_epoch" not in fpgm.options and "subset_size" not in fpgm.options  # LAASP-only keys
    assert fpgm.stage == "matched" and fpgm.budget_from == "006-resnet20-laasp-t0.4-s1"
    assert sum(t.stage == "main" for t in trials) == 2


def test_a_pruner_at_its_own_prune_epoch_still_has_a_laasp_twin(tmp_path) -> None:
    """SFP masks from epoch 0 (its paper's setting, its Config's own default) while LAASP prunes at
    epoch 1: its budget twin is the LAASP trial matching on everything else; told to start at
    another epoch than both, it has none and the plan says so."""
    text = """
        fixed: {model: resnet20, epochs: 4, prune_epoch: 1, epoch_budget: laasp, target_flops: 0.3}
        pruners: {sfp: {prune_epoch: 0}}
        grid: {pruner: [laasp, sfp, l1_uniform]}
    """
    trials = {t.name: t for t in plan_grid(load_space(_space(tmp_path, text)))}
    assert trials["001-resnet20-sfp-t0.3-s0"].options["prune_epoch"] == 0
    assert trials["001-resnet20-sfp-t0.3-s0"].budget_from == "000-resnet20-laasp-t0.3-s0"
    assert trials["002-resnet20-l1_uniform-t0.3-s0"].budget_from == "000-resnet20-laasp-t0.3-s0"
    with pytest.raises(UserError, match="needs exactly one LAASP trial"):
        plan_grid(load_space(_space(tmp_path, text.replace("prune_epoch: 0", "prune_epoch: 2"), "late.yaml")))


def test_unpruned_budget_twins_and_the_old_rule(tmp_path) -> None:
    """Several targets: the unpruned trial names every LAASP twin of its seed (it takes the largest budget);
    ``epoch_budget: none`` in its grid block keeps the rule of older sweeps (no budget for it)."""
    grid = """
        fixed: {model: resnet20, epochs: 4, prune_epoch: 1, epoch_budget: laasp}
        grid: {pruner: [none, laasp, fpgm], target_flops: [0.3, 0.5]}
        seeds: [0, 1]
    """
    trials = {t.name: t for t in plan_grid(load_space(_space(tmp_path, grid)))}
    assert trials["005-resnet20-unpruned-s1"].budget_from == "006-resnet20-laasp-t0.3-s1, 007-resnet20-laasp-t0.5-s1"
    old = """
        fixed: {model: resnet20, epochs: 4, prune_epoch: 1, epoch_budget: laasp}
        grid:
          - {pruner: none, epoch_budget: none}
          - {pruner: [laasp, fpgm], target_flops: [0.3, 0.5]}
        seeds: [0, 1]
    """
    space = load_space(_space(tmp_path, old, "old.yaml"))
    trials = {t.name: t for t in plan_grid(space)}
    validate_plan(space, list(trials.values()))
    assert trials["000-resnet20-unpruned-s0"].budget_from is None and trials["000-resnet20-unpruned-s0"].stage == "main"
    assert list(trials)[:3] == ["000-resnet20-unpruned-s0", "001-resnet20-laasp-t0.3-s0", "002-resnet20-laasp-t0.5-s0"]


def test_options_build_the_same_config_as_the_cli() -> None:
    options = {"model": "resnet20", "dataset": "digits", "epochs": 20, "pruner": "laasp", "target_flops": 0.4,
               "criteria": ("l1", "cos"), "step_scale": 2.0, "seed": 3, "milestones": (5, 10)}
    got = job_config(options, "/tmp/out")
    parser = argparse.ArgumentParser()
    COMMANDS.get("run")[0](parser)
    args = parser.parse_args(["--model", "resnet20", "--dataset", "digits", "--epochs", "20", "--pruner", "laasp",
                              "--target-flops", "0.4", "--criteria", "l1,cos", "--step-scale", "2", "--seed", "3",
                              "--milestones", "5,10", "--out", "/tmp/out", "--quiet"])
    want = job_config_from_options(vars(args), pruner_config=pruner_config_from_options(vars(args)))
    assert got == want
    assert got.pruner_config.prune_epoch == 5  # the recipe's 50/200 scaled to 20 epochs, as the CLI does


def test_sampler_sends_pruner_only_parameters_to_that_pruner(tmp_path) -> None:
    path = _space(tmp_path, """
        fixed: {model: resnet20, target_flops: 0.3, epochs: 4}
        search:
          num_samples: 5
          space:
            pruner: {choice: [laasp, l1_uniform, none]}
            criteria: {subset: [l1, l2, eucl, cos]}
            step_rule:
              choice: [flops, ratio]
              when:
                flops: {step_scale: {low: 0.5, high: 2.0, log: true}}
                ratio: {step_scale: {low: 0.05, high: 0.2}}
            recover_epoch: {low: 1, high: 3}
            lr: {low: 0.01, high: 0.1, log: true}
    """)
    sampler = SpaceSampler(load_space(path))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        opts = sampler(trial)["options"]
        seen.add(opts["pruner"])
        assert "lr" in opts and opts["seed"] == 0
        if opts["pruner"] == "laasp":
            assert {"criteria", "step_rule", "step_scale", "recover_epoch"} <= set(opts)
            assert f"step_scale[step_rule={opts['step_rule']}]" in trial.params
            assert opts["criteria"] == tuple(m for m in ("l1", "l2", "eucl", "cos") if trial.params[f"criteria.{m}"])
            if opts["step_rule"] == "ratio":
                assert 0.05 <= opts["step_scale"] <= 0.2
        else:  # LAASP-only keys are neither sampled nor sent
            assert not {"criteria", "step_rule", "step_scale", "recover_epoch"} & set(opts)
            assert set(trial.params) == {"pruner", "lr"}
            if opts["pruner"] is None:
                assert "target_flops" not in opts
        study.tell(trial, 1.0)
    assert seen == {"laasp", "l1_uniform", None}


def test_string_encoding_never_draws_an_empty_pool(tmp_path) -> None:
    path = _space(tmp_path, """
        fixed: {model: resnet20, pruner: laasp, target_flops: 0.3}
        search:
          space:
            criteria: {subset: [l1, eucl, cos], encoding: string}
    """)
    sampler = SpaceSampler(load_space(path))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    pools = {sampler.options(study.ask())["criteria"] for _ in range(60)}
    assert len(pools) == 7 and () not in pools  # every non-empty subset of 3 criteria, nothing else


BAD = [
    ("fixed:\n  model: resnet20\n  epochz: 3\n", 3, "unknown option 'epochz' (did you mean 'epochs'?)"),
    ("fixed: {model: resnet20}\ngird:\n  pruner: [laasp]\n", 2, "unknown key 'gird' in the search space (did you mean 'grid'?)"),
    ("fixed:\n  model: resnet20\ngrid:\n  pruner:\n    - laasp\n    - nope\n", 6, "unknown pruner 'nope'; registered:"),
    ("fixed:\n  model: resnet20\n  pruner: laasp\n  criteria: []\n", 4, "the criteria pool is empty"),
    ("fixed:\n  model: resnet20\n  pruner: laasp\n  target_flops: 0.3\nsearch:\n  space:\n"
     "    criteria: {subset: []}\n", 7, "the criteria pool is empty"),
    ("fixed:\n  model: resnet20\n  criteria: l1+bogus\n", 3, "unknown criterion 'bogus'"),
    ("fixed:\n  model: resnet99\n", 2, "unknown model 'resnet99'"),
    ("fixed:\n  model: resnet20\n  model: resnet32\n", 3, "duplicate key 'model' (first at line 2)"),
    ("fixed:\n  model: resnet20\n  epochs: ten\n", 3, "epochs must be an integer"),
    ("fixed: {model: resnet20\n", 2, "not valid YAML"),
    ("fixed:\n  model: resnet20\npruners:\n  l1_uniform:\n    recover_epoch: 2\n", 5,
     "pruners.l1_uniform.recover_epoch: l1_uniform does not use recover_epoch"),
    ("fixed: {model: resnet20, pruner: laasp, target_flops: 0.3}\nsearch:\n  objective: [top1, flops_reduction]\n"
     "  asha: {grace_period: 2}\n  space:\n    lr: {low: 0.01, high: 0.1}\n", 4, "search.asha needs a single objective"),
    ("fixed: {model: resnet20}\nsearch:\n  space:\n    lr: {low: 0.1, high: 0.01}\n", 4, "low must be below high"),
    ("fixed: {model: resnet20}\nsearch:\n  objective: acc\n  space:\n    lr: {low: 0.01, high: 0.1}\n", 3,
     "unknown objective 'acc'"),
    ("fixed: {model: resnet20}\ngrid: {lr: [0.1]}\nsearch:\n  space: {lr: {low: 0.01, high: 0.1}}\n", 3,
     "a space is a grid or a search, not both"),
    ("fixed:\n  model: resnet20\n  seed: 1\n", 3, "set seeds with the top-level 'seeds' list"),
    ("fixed: {model: resnet20, pruner: laasp, target_flops: 0.3, epoch_budget: laasp}\nsearch:\n"
     "  space: {lr: {low: 0.01, high: 0.1}}\n", 2, "epoch_budget: laasp matches grid trials to their LAASP twin"),
    ("fixed:\n  model: resnet20\ngrid:\n  pruner: [laasp]\n  recover_epoch: [1, 2]\npruners:\n  laasp: {recover_epoch: 3}\n",
     5, "grid.recover_epoch is an axis and also set in pruners.laasp"),
]


@pytest.mark.parametrize("text,line,words", BAD, ids=[w.split(";")[0][:40] for _, _, w in BAD])
def test_bad_space_names_the_line(tmp_path, text, line, words) -> None:
    path = _space(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_space(path)
    assert str(info.value).startswith(f"{path}:{line}: "), str(info.value)
    assert words in str(info.value)


def test_cli_reports_one_error_line_and_writes_nothing(tmp_path) -> None:
    path = _space(tmp_path, "fixed:\n  model: resnet20\ngrid:\n  pruner: [none, laasp, nope]\n")
    results = tmp_path / "results"
    line = error_line(run_cli("sweep", str(path), "--results-dir", str(results)))
    assert f"{path}:4: unknown pruner 'nope'" in line
    assert not results.exists()
    # a CIFAR space without --data-root: refused before any trial
    line = error_line(run_cli("sweep", str(SPACES / "cifar10_cpu_small.yaml"), "--results-dir", str(results),
                              "--executor", "serial"))
    assert "--data-root is required for cifar10" in line and not results.exists()
    line = error_line(run_cli("sweep", "--resume", "nothing-here", "--results-dir", str(results)))
    assert "no sweep 'nothing-here' to resume" in line


def test_plan_errors_name_the_trial(tmp_path) -> None:
    path = _space(tmp_path, """
        fixed: {model: resnet20, epochs: 2, target_flops: 0.3}
        grid:
          pruner: [laasp]
          prune_epoch: [1, 5]
    """)
    space = load_space(path)
    with pytest.raises(UserError, match=r"trial 001-resnet20-laasp-t0.3-s0: --prune-epoch 5 is after the last epoch"):
        validate_plan(space, plan_grid(space))
    path = _space(tmp_path, """
        fixed: {model: resnet20, epochs: 2, target_flops: 0.3, epoch_budget: laasp}
        grid:
          pruner: [l1_uniform]
    """, "nolaasp.yaml")
    with pytest.raises(UserError, match="needs exactly one LAASP trial"):
        plan_grid(load_space(path))


def test_paper_imagenet_plans_the_seed_tables_imagenet_rows(tmp_path) -> None:
    """search_spaces/paper_imagenet.yaml: every ImageNet row of the paper (harness/results/paper.py)
    with LAASP, l1_uniform and fpgm at its target, the unpruned baseline per model, the authors'
    recipe (from scratch: no pretrained weights), fp32."""
    from harness.results.paper import PAPER_RESULTS
    from harness.sweep.plan import job_config

    trials = plan_grid(load_space(SPACES / "paper_imagenet.yaml", overrides={"data_root": str(tmp_path)}))
    rows = {(p.model, p.flops_reduction) for p in PAPER_RESULTS if p.dataset == "imagenet"}
    for pruner in ("laasp", "l1_uniform", "fpgm"):
        assert {(t.options["model"], t.options["target_flops"]) for t in trials if t.options["pruner"] == pruner} == rows
    assert sorted(t.options["model"] for t in trials if t.options["pruner"] is None) == [
        "mobilenet_v2", "resnet18", "resnet34", "resnet50"]
    assert len(trials) == 3 * len(rows) + 4
    assert {t.options["dataset"] for t in trials} == {"imagenet"} and all("weights" not in t.options for t in trials)
    laasp = next(t for t in trials if t.options["pruner"] == "laasp" and t.options["model"] == "resnet50")
    cfg = job_config(dict(laasp.options), str(tmp_path / "o"))
    assert (cfg.epochs, cfg.precision, cfg.optim.milestones, cfg.optim.weight_decay) == (100, "fp32", (30, 60, 90), 1e-4)
    pc = cfg.pruner_config
    assert (pc.prune_epoch, pc.recover_epoch, pc.recover_flop, pc.subset_size, pc.max_prune_rate) == (25, 2, 0.03, 5000, 0.75)
