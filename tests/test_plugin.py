"""Pruners from outside the package: the README's example plugin end to end, and clear errors
(one ``error:`` line, exit code 2, nothing written) for every way a plugin can go wrong."""
from __future__ import annotations

import json
import shutil
import textwrap

import pytest

from tests.helpers import REPO, error_line, run_cli

EXAMPLE = REPO / "examples" / "my_pruner.py"
TINY_RUN = ("--model", "resnet20", "--dataset", "digits", "--epochs", "2", "--prune-epoch", "1",
            "--target-flops", "0.2", "--quiet")


def test_example_plugin_runs_end_to_end(tmp_path) -> None:
    plugin = tmp_path / "my_pruner.py"  # outside the package, as a user's file would be
    shutil.copy(EXAMPLE, plugin)
    out = tmp_path / "run"
    proc = run_cli("run", "--plugin", str(plugin), "--pruner", "widest_l2", *TINY_RUN,
                   "--train-subset", "300", "--test-subset", "100", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "pruner=widest_l2" in proc.stdout.splitlines()[-1]
    record = json.loads((out / "record.json").read_text())
    for key in ("model", "dataset", "pruner", "seed", "config", "env", "history", "final", "flops", "params",
                "epochs_trained", "wall_time_s", "checkpoint", "pre_prune",
                "target_flops", "target_reached", "trace", "removed_per_criterion", "layer_rates"):
        assert key in record, key
    assert record["pruner"] == "widest_l2" and record["target_flops"] == 0.2 and record["target_reached"]
    assert record["flops"]["reduction"] >= 0.2 == record["config"]["pruner_config"]["target_flops"]
    assert record["trace"] and record["trace"][-1]["flops_reduction"] == pytest.approx(record["flops"]["reduction"])
    assert [h["phase"] for h in record["history"]] == ["train", "finetune"] and record["epochs_trained"] == 2
    assert (out / "checkpoint.pt").is_file()


def test_during_training_example_plugin_runs_end_to_end(tmp_path) -> None:
    """examples/soft_pruner.py: soft masks at every epoch end, removed after the last one."""
    plugin = tmp_path / "soft_pruner.py"
    shutil.copy(REPO / "examples" / "soft_pruner.py", plugin)
    out = tmp_path / "run"
    proc = run_cli("run", "--plugin", str(plugin), "--pruner", "soft_l1", "--model", "resnet20", "--dataset", "digits",
                   "--epochs", "3", "--prune-epoch", "1", "--target-flops", "0.2", "--quiet", "--train-subset", "200",
                   "--test-subset", "80", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "record.json").read_text())
    assert record["pruner"] == "soft_l1" and record["target_reached"] and record["flops"]["reduction"] >= 0.2
    assert record["mask_updates"] == 3  # at the prune point and after each of the 2 later epochs
    assert [h["phase"] for h in record["history"]] == ["train", "finetune", "finetune"]
    assert record["method"] == {"source": "example plugin: SFP-style soft L1 masks on block-internal convs"}
    rates = record["layer_rates"]
    assert rates and all(name.endswith("conv1") and name != "conv1" for name in rates)  # block-internal only


def _plugin(tmp_path, body: str):
    path = tmp_path / "plugin.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_unknown_pruner_lists_the_registered_ones(tmp_path) -> None:
    line = error_line(run_cli("run", "--pruner", "nope", *TINY_RUN, "--out", str(tmp_path / "o")))
    assert "unknown pruner 'nope'; registered:" in line
    for name in ("fpgm", "l1_global", "l1_uniform", "laasp", "random"):
        assert name in line
    assert not (tmp_path / "o").exists()


def test_missing_plugin_file(tmp_path) -> None:
    missing = tmp_path / "nowhere.py"
    line = error_line(run_cli("run", "--plugin", str(missing), "--pruner", "x", *TINY_RUN))
    assert f"--plugin {missing}: file not found" in line


def test_plugin_that_fails_to_import_shows_its_error(tmp_path) -> None:
    plugin = _plugin(tmp_path, "import no_such_module_for_this_test\n")
    line = error_line(run_cli("run", "--plugin", str(plugin), "--pruner", "x", *TINY_RUN))
    assert "failed to import" in line and "ModuleNotFoundError" in line and "no_such_module_for_this_test" in line


def test_duplicate_registration(tmp_path) -> None:
    plugin = _plugin(tmp_path, """
        from baselines.uniform import UniformPruner
        from harness.prune.pruner import PRUNERS

        @PRUNERS.register("l1_uniform")
        class Mine(UniformPruner):
            criterion = "l2"
    """)
    line = error_line(run_cli("run", "--plugin", str(plugin), "--pruner", "l1_uniform", *TINY_RUN))
    assert "duplicate pruner registration: 'l1_uniform' is already registered" in line
    assert "baselines.uniform.L1Uniform" in line and "pick another name" in line
