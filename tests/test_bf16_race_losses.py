"""bf16 races: the evaluator's autocast, the --approx-precision knob, the benchmark's bf16 pass, its replay."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import pytest
import torch

from harness.errors import UserError
from laasp.config import LAASPConfig
from laasp.pruner import LAASP
from laasp.racing import RaceSettings, race
from laasp.selection import Candidate
from tests.helpers import REPO, distinct_resnet20

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_approx_frontier  # noqa: E402
import simulate_races  # noqa: E402


@pytest.fixture(scope="module")
def pruner_and_candidates():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(120, 1, 8, 8, generator=g), torch.randint(0, 10, (120,), generator=g)
    pruner = LAASP(distinct_resnet20(), LAASPConfig(target_flops=0.5, chunk_size=40), x, y, 8, 1)
    return pruner, pruner.candidates()


def test_autocast_scores_near_fp32_but_not_bit_for_bit_and_is_switched_off_after(pruner_and_candidates) -> None:
    pruner, candidates = pruner_and_candidates
    fp32 = [Candidate(c.removal, c.sources) for c in candidates]
    pruner.evaluator.losses(fp32)
    saved = bench_approx_frontier.bf16_pass(pruner, candidates, exact_s=1.0)
    assert pruner.evaluator.autocast_dtype is None and not pruner.evaluator.keep_per_image
    bf16 = saved["losses_bf16"]
    assert bf16.shape == (len(candidates), 120) and bf16.dtype == torch.float64
    means = torch.tensor([c.loss for c in fp32], dtype=torch.float64)
    assert torch.allclose(bf16.mean(1), means, rtol=0.05)  # bf16 keeps ~3 digits per activation
    assert not torch.equal(bf16.mean(1), means)  # ... so it is not the fp32 pass again
    again = [Candidate(c.removal, c.sources) for c in candidates]
    pruner.evaluator.losses(again)  # fp32 again after the bf16 pass: the same numbers as before it
    assert [c.loss for c in again] == [c.loss for c in fp32]
    assert saved["exact_s"] == 1.0 and saved["exact_bf16_s"] > 0


def _step(race_losses: torch.Tensor, exact_s: float = 6.0, bf16_s: float = 3.0) -> dict:
    # candidate 0 wins in fp32 (mean 1.0 against 1.5); the bf16 losses are given per test
    losses = torch.tensor([[1.0] * 8, [1.5] * 8], dtype=torch.float64)
    return {"losses": losses, "losses_bf16": race_losses, "suffix_macs": torch.tensor([10, 10]), "name": "toy",
            "exact_s": exact_s, "exact_bf16_s": bf16_s}


def test_a_bf16_race_is_judged_against_fp32_exact_and_its_work_scaled_by_the_measured_speed() -> None:
    exact = RaceSettings(1.0, 2)  # first round on the whole subset: exact selection on those losses
    flipped = _step(torch.tensor([[1.6] * 8, [1.5] * 8], dtype=torch.float64))  # bf16 prefers candidate 1
    fp32_run = simulate_races.replay(flipped, [exact], 8, torch.arange(8))[0]
    bf16_run = simulate_races.replay(flipped, [exact], 8, torch.arange(8), race_losses="bf16")[0]
    assert fp32_run["agrees"] and fp32_run["work_ratio"] == 1.0
    assert not bf16_run["agrees"] and bf16_run["regret"] == pytest.approx(0.5)  # fp32 loss of the pick
    assert bf16_run["work_ratio"] == pytest.approx(2.0)  # same work count, twice as fast a pass
    kept = _step(torch.tensor([[1.01] * 8, [1.5] * 8], dtype=torch.float64))
    assert simulate_races.replay(kept, [exact], 8, torch.arange(8), race_losses="bf16")[0]["agrees"]


def test_bf16_replay_of_a_folder_without_bf16_losses_is_one_error_line(tmp_path, capsys) -> None:
    losses = tmp_path / "losses"
    losses.mkdir()
    step = _step(torch.zeros(2, 8, dtype=torch.float64))
    del step["losses_bf16"]
    torch.save(step, losses / "n8-step001.pt")
    code = simulate_races.main([str(losses), "--race-losses", "bf16", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--bf16-losses" in err[0] and not (tmp_path / "out").exists()


def test_bf16_losses_without_a_losses_folder_is_refused(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["bench_approx_frontier.py", "--bf16-losses"])
    with pytest.raises(SystemExit) as stop:
        bench_approx_frontier.entry()
    assert stop.value.code == 2 and "--save-losses" in capsys.readouterr().err


def test_a_bf16_race_runs_its_rounds_under_autocast_and_exact_selection_stays_fp32(pruner_and_candidates,
                                                                                  monkeypatch) -> None:
    pruner, candidates = pruner_and_candidates
    evaluator, seen = pruner.evaluator, []
    real_losses = evaluator.losses

    def spy(pool, *args, **kwargs):
        seen.append(evaluator.autocast_dtype)
        return real_losses(pool, *args, **kwargs)

    monkeypatch.setattr(evaluator, "losses", spy)
    settings = RaceSettings(40 / 120, 2, precision="bf16")
    race(evaluator, [Candidate(c.removal, c.sources) for c in candidates], settings)
    assert seen and set(seen) == {torch.bfloat16} and evaluator.autocast_dtype is None
    seen.clear()
    evaluator.exact([Candidate(c.removal, c.sources) for c in candidates])
    assert seen == [None]
    assert settings.describe().endswith(", bf16 forwards") and "forwards" not in RaceSettings().describe()


def test_approx_precision_is_checked_and_only_a_bf16_race_changes_a_saved_states_identity() -> None:
    with pytest.raises(UserError, match="--approx-precision must be fp32 or bf16"):
        LAASPConfig(target_flops=0.5, selection="approx", approx_precision="fp16").validate()
    fp32 = LAASPConfig(target_flops=0.5, selection="approx")
    bf16 = replace(fp32, approx_precision="bf16")
    assert bf16.race_settings() == RaceSettings(precision="bf16")
    assert "approx_precision" not in fp32.identity()  # what an approx state saved before the field holds
    assert bf16.identity()["approx_precision"] == "bf16" and bf16.identity() != fp32.identity()


def test_the_frontier_benchmark_times_each_race_in_each_precision_asked(monkeypatch, capsys) -> None:

    args = argparse.Namespace(confidences="none", start_fractions="0.08", etas="2", precisions="fp32,bf16")
    assert bench_approx_frontier.settings_grid(args) == [RaceSettings(0.08, 2), RaceSettings(0.08, 2, precision="bf16")]
    monkeypatch.setattr(sys, "argv", ["bench_approx_frontier.py", "--precisions", "fp16"])
    with pytest.raises(SystemExit) as stop:
        bench_approx_frontier.entry()
    assert stop.value.code == 2 and "--precisions takes" in capsys.readouterr().err


def test_a_bf16_race_on_a_gpu_without_native_bf16_is_refused_before_training(monkeypatch) -> None:
    from types import SimpleNamespace

    import harness.train.device as device

    monkeypatch.setattr(device, "select_device", lambda name: torch.device("cuda:0"))
    monkeypatch.setattr(device, "cuda_has_native_bf16", lambda dev: False)  # e.g. a V100
    cfg = LAASPConfig(target_flops=0.5, selection="approx", approx_precision="bf16")
    with pytest.raises(UserError, match="no native bfloat16"):
        cfg.validate(SimpleNamespace(epochs=100, device="cuda"))
    replace(cfg, approx_precision="fp32").validate(SimpleNamespace(epochs=100, device="cuda"))


def test_check_replays_a_measured_bf16_race_on_the_saved_bf16_pass(pruner_and_candidates, tmp_path) -> None:
    import json

    pruner, candidates = pruner_and_candidates
    pool = [Candidate(c.removal, c.sources) for c in candidates]
    pruner.evaluator.keep_per_image = True
    winner = pruner.evaluator.exact(pool)
    extra = bench_approx_frontier.bf16_pass(pruner, pool, exact_s=1.0)
    bench_approx_frontier.save_losses(tmp_path / "n120-step001.pt", pruner, pool, winner, None, extra)
    settings = RaceSettings(20 / 120, 2, precision="bf16")
    pick = race(pruner.evaluator, [Candidate(c.removal, c.sources) for c in candidates], settings)
    picked = next(c for c in pool if c.removal == pick.removal)
    measured = {"sizes": [{"subset": 120, "steps": [{"step": 1, "winner_loss": winner.loss, "races": [
        {"settings": settings.__dict__, "first_round": 20, "agrees": picked is winner,
         "regret": (picked.loss - winner.loss) / winner.loss}]}]}]}
    (tmp_path / "frontier.json").write_text(json.dumps(measured))
    steps = simulate_races.load_steps(tmp_path)
    assert simulate_races.check([steps], tmp_path / "frontier.json") == (1, 1)
    del steps[0]["losses_bf16"]  # saved without --bf16-losses: nothing to replay it on
    assert simulate_races.check([steps], tmp_path / "frontier.json") == (0, 0)
