"""Bad input that used to slip through (issue 15): each is one ``error:`` line and exit code 2,
before any training, with nothing written; and the highest reachable FLOPs reduction that the
up-front check refuses against is the one the pruners really reach."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from harness.models import build_model
from harness.prune.plugins import load_builtin_pruners
from harness.prune.pruner import PRUNERS
from tests import test_baselines as tb
from tests.helpers import REPO, one_error, run_cli

load_builtin_pruners()
DIGITS = ["--model", "resnet20", "--dataset", "digits", "--epochs", "2", "--quiet"]
GRID = """
fixed: {model: resnet20, dataset: digits, epochs: 2, prune_epoch: 1, train_subset: 100, test_subset: 50}
grid: {pruner: [none, l1_uniform], target_flops: [0.3]}
"""


def test_unwritable_out(capsys) -> None:
    line = one_error(capsys, ["train", *DIGITS, "--out", "/proc/nope"])
    assert "--out /proc/nope: cannot write there" in line


def test_taylor_run_too_short_for_its_pruning_iterations(capsys, tmp_path) -> None:
    """Its released 32 iterations every 30 minibatches need 960 minibatches after the prune epoch;
    digits at batch 64 has 23 an epoch, so the rest would be pruned after training, unrecovered."""
    argv = ["run", "--pruner", "taylor", *DIGITS, "--prune-epoch", "1", "--target-flops", "0.3", "--batch-size", "64"]
    line = one_error(capsys, [*argv, "--out", str(tmp_path / "o")])
    assert "taylor prunes 32 times every 30 minibatches (960 minibatches)" in line
    assert "trains 23 after --prune-epoch 1 (1 epochs of 23); pass --frequency 1" in line
    assert not (tmp_path / "o").exists()


def test_laasp_target_above_what_the_caps_allow(capsys, tmp_path) -> None:
    line = one_error(capsys, ["run", "--pruner", "laasp", *DIGITS, "--target-flops", "0.99", "--out", str(tmp_path / "o")])
    assert "--target-flops 0.99 is unreachable for resnet20" in line and "at most 0.9367" in line
    assert not (tmp_path / "o" / "state.pt").exists()  # refused before the first epoch


@pytest.mark.parametrize("pruner", sorted(PRUNERS.names()))
def test_every_pruner_refuses_a_target_its_cap_makes_unreachable(pruner, capsys) -> None:
    fits = ["--frequency", "1", "--prune-iterations", "2"] if pruner == "taylor" else []  # 2 epochs hold its iterations
    line = one_error(capsys, ["run", "--pruner", pruner, *DIGITS, *fits, "--target-flops", "0.3",
                              "--max-prune-rate", "0.1"])
    assert "--target-flops 0.3 is unreachable" in line and "at most 0.1572" in line and "--max-prune-rate 0.1" in line


@pytest.mark.parametrize("name,size,channels,rate", [("resnet20", 8, 1, 0.1), ("resnet20", 32, 3, 0.75),
                                                     ("vgg16", 32, 3, 0.5)])
def test_max_reachable_reduction_is_what_every_layer_at_its_cap_gives(name, size, channels, rate) -> None:
    """The bound equals the baselines' exact FLOPs model with every coupled group at its cap, and
    l1_uniform asked for exactly that much reaches it."""
    from baselines.common import FlopsModel, coupled_groups
    from harness.prune.flops import count_cost
    from harness.prune.prunable import PrunableNetwork

    torch.manual_seed(0)
    model = build_model(name, 10, channels)
    best = PRUNERS.get("l1_uniform").Config(target_flops=0.5, max_prune_rate=rate).max_reachable_reduction(
        model, size, channels)
    net = PrunableNetwork(model, size, channels)
    groups = coupled_groups(net, rate)
    exact = 1 - FlopsModel(net, groups).flops([g.cap for g in groups]) / count_cost(model, size, channels).flops
    assert best == pytest.approx(exact, abs=1e-12)
    fields, ctx = tb.prune("l1_uniform", model, size, best - 1e-9, in_channels=channels, max_prune_rate=rate)
    assert fields["target_reached"] and ctx.reduction() == pytest.approx(best, abs=1e-9)


def test_sweep_results_dir_unwritable(capsys, tmp_path) -> None:
    (tmp_path / "grid.yaml").write_text(GRID)
    line = one_error(capsys, ["sweep", str(tmp_path / "grid.yaml"), "--results-dir", "/proc/nope", "--executor", "serial"])
    assert "--results-dir /proc/nope/grid: cannot write there" in line


@pytest.mark.parametrize("edit,words", [
    ("target_flops: [0.99]", "trial 001-resnet20-l1_uniform-t0.99-s0: --target-flops 0.99 is unreachable"),
    ("target_flops: [0.3], from_checkpoint: [missing.pt]", "--from-checkpoint"),
    ("target_flops: [0.3], milestones: ['5']", "--milestones 5: 5 is not before the last epoch"),
])
def test_sweep_yaml_keys_checked_before_any_trial(edit, words, capsys, tmp_path) -> None:
    (tmp_path / "grid.yaml").write_text(GRID.replace("target_flops: [0.3]", edit))
    line = one_error(capsys, ["sweep", str(tmp_path / "grid.yaml"), "--results-dir", str(tmp_path / "r"),
                              "--executor", "serial"])
    assert words in line, line
    assert not (tmp_path / "r" / "grid").exists()  # a refused start leaves no folder behind


@pytest.mark.parametrize("argv,words", [
    (["train", *DIGITS, "--milestones", "1,1"], "lists an epoch twice"),
    (["train", *DIGITS, "--milestones", "7"], "7 is not before the last epoch (--epochs 2)"),
    (["run", "--pruner", "l1_uniform", *DIGITS, "--target-flops", "0.3", "--from-checkpoint", "."], "is a folder"),
    (["sweep", "--force"], "--force goes with --resume"),
    (["sweep", "--max-failures", "-1", "--executor", "serial"], "--max-failures must be >= 0"),
])
def test_more_flags_refused_up_front(argv, words, capsys, tmp_path) -> None:
    if argv[0] == "sweep":
        argv = [*argv, "--results-dir", str(tmp_path)]
    assert words in one_error(capsys, argv)


def test_results_outputs_unwritable(capsys, tmp_path) -> None:
    folder = tmp_path / "quick"
    shutil.copytree(REPO / "results" / "quick", folder, ignore=shutil.ignore_patterns("plots", "*.html"))
    assert "/proc/t.md: cannot write there" in one_error(capsys, ["table", str(folder), "--out", "/proc/t.md"])
    assert "--out /proc/nope: cannot write there" in one_error(capsys, ["plots", str(folder), "--out", "/proc/nope"])


def test_resume_with_an_edited_space_shows_the_diff_unless_forced(tmp_path) -> None:
    space = tmp_path / "grid.yaml"
    space.write_text(GRID.replace("[none, l1_uniform]", "[none]"))
    assert run_cli("sweep", str(space), "--results-dir", str(tmp_path), "--executor", "serial").returncode == 0
    space.write_text(space.read_text().replace("epochs: 2", "epochs: 3"))
    proc = run_cli("sweep", "--resume", "grid", "--results-dir", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.startswith("error: the search space")
    assert "-fixed: {model: resnet20, dataset: digits, epochs: 2" in proc.stderr
    assert "+fixed: {model: resnet20, dataset: digits, epochs: 3" in proc.stderr
    forced = run_cli("sweep", "--resume", "grid", "--results-dir", str(tmp_path), "--force")
    assert forced.returncode == 0 and "the edit is ignored" in forced.stdout
    assert json.loads((tmp_path / "grid" / "records" / "000-resnet20-unpruned-s0.json").read_text())["epochs_trained"] == 2


def test_ray_trial_larger_than_the_cluster(tmp_path) -> None:
    (tmp_path / "grid.yaml").write_text(GRID)
    proc = run_cli("sweep", str(tmp_path / "grid.yaml"), "--results-dir", str(tmp_path), "--cpus-per-trial", "1000")
    assert proc.returncode == 2 and "--cpus-per-trial 1000: the Ray cluster has" in proc.stderr
    assert not (tmp_path / "grid").exists()  # nothing left: the corrected command starts afresh, no --resume
