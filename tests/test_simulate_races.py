"""benchmarks/simulate_races.py: races replayed on a saved loss matrix are the production races."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from laasp.config import LAASPConfig
from laasp.pruner import LAASP
from laasp.racing import RaceSettings, race
from laasp.selection import Candidate
from tests.helpers import REPO, distinct_resnet20

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_approx_frontier  # noqa: E402
import simulate_races  # noqa: E402


@pytest.fixture(scope="module")
def saved_step(tmp_path_factory):
    """One exact step of LAASP on a random ResNet-20 and 240 random 8x8 images, losses saved."""
    model = distinct_resnet20()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(240, 1, 8, 8, generator=g), torch.randint(0, 10, (240,), generator=g)
    pruner = LAASP(model, LAASPConfig(target_flops=0.5, chunk_size=50), x, y, 8, 1)
    candidates = pruner.candidates()
    pruner.evaluator.keep_per_image = True
    winner = pruner.select(candidates)
    path = tmp_path_factory.mktemp("losses") / "n240-step001.pt"
    bench_approx_frontier.save_losses(path, pruner, candidates, winner)
    return pruner, candidates, torch.load(path, weights_only=True)


def test_saved_losses_are_the_exact_pass(saved_step) -> None:
    _, candidates, step = saved_step
    assert step["losses"].shape == (len(candidates), 240) and step["losses"].dtype == torch.float64
    means = step["losses"].mean(1)
    assert torch.allclose(means, torch.tensor([c.loss for c in candidates], dtype=torch.float64), rtol=1e-12)
    assert int(torch.argmin(means)) == step["winner"]
    # a candidate re-runs the network from its first stage: a deeper one costs less, the stem the most
    macs = step["suffix_macs"].tolist()
    assert macs[0] == max(macs) and min(macs) < max(macs)


@pytest.mark.parametrize("settings", [RaceSettings(12 / 240, 3), RaceSettings(24 / 240, 2),
                                      RaceSettings(12 / 240, 4, confidence=0.9)])
def test_the_subset_as_drawn_replays_the_production_race(saved_step, settings) -> None:
    pruner, candidates, step = saved_step
    real = race(pruner.evaluator, [Candidate(c.removal, c.sources) for c in candidates], settings)
    replayed = simulate_races.replay(step, [settings], 240, torch.arange(240))[0]
    assert replayed["agrees"] == (real.removal == candidates[step["winner"]].removal)
    evaluator = simulate_races.MatrixEvaluator(step["losses"], step["suffix_macs"])
    pick = race(evaluator, [Candidate(i, []) for i in range(len(candidates))], settings)
    assert candidates[pick.removal].removal == real.removal and pick.images == real.images


def test_work_counts_images_times_the_stages_re_run(saved_step) -> None:
    _, _, step = saved_step
    # a first round on the whole subset is exact selection: the same work
    assert simulate_races.replay(step, [RaceSettings(1.0, 3)], 240, torch.arange(240))[0]["work_ratio"] == 1.0
    assert simulate_races.replay(step, [RaceSettings(12 / 240, 3)], 240, torch.arange(240))[0]["work_ratio"] > 2


def test_a_smaller_subset_has_its_own_exact_winner() -> None:
    # candidate 0 wins on all 8 images (mean 1.0 against 1.5), candidate 1 on the first 4
    losses = torch.tensor([[2.0] * 4 + [0.0] * 4, [1.5] * 8], dtype=torch.float64)
    step = {"losses": losses, "suffix_macs": torch.tensor([10, 10]), "name": "toy"}
    assert simulate_races.replay(step, [RaceSettings(1.0, 3)], 8, torch.arange(8))[0]["agrees"]
    part = simulate_races.replay(step, [RaceSettings(1.0, 3)], 4, torch.arange(8))[0]
    assert part["agrees"] and part["regret"] == 0.0  # on 4 images the race's pick, 1, is the exact one
    assert not part["exact_is_full"]  # ... which is not the exact pick on all 8
    # a race that keeps one of two after 2 images drops candidate 0: regret (1.5 - 1.0) / 1.0
    missed = simulate_races.replay(step, [RaceSettings(2 / 8, 2)], 8, torch.arange(8))[0]
    assert not missed["agrees"] and missed["regret"] == pytest.approx(0.5)
    # another order that shows candidate 0's zeros first keeps it
    assert simulate_races.replay(step, [RaceSettings(2 / 8, 2)], 8, torch.tensor([4, 5, 6, 7, 0, 1, 2, 3]))[0]["agrees"]


@pytest.mark.parametrize("extra,problem", [
    (["--subsets", "500"], "asks for more than the 240 images"),
    (["--measured", "a.json", "b.json"], "names 2 runs for 1 losses folders"),
    (["--authors", "missing.json"], "missing.json is not a file"),
])
def test_bad_input_is_one_error_line_before_any_replay(saved_step, tmp_path, capsys, extra, problem) -> None:
    losses = tmp_path / "losses"
    losses.mkdir()
    _, _, step = saved_step
    torch.save(step, losses / "n240-step001.pt")
    code = simulate_races.main([str(losses), "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and problem in err[0]
    assert not (tmp_path / "out").exists()


def test_an_empty_losses_folder_is_an_error(tmp_path, capsys) -> None:
    assert simulate_races.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "run bench_approx_frontier.py --save-losses" in capsys.readouterr().err


def test_random_orders_give_an_agreement_rate() -> None:
    # the toy above: the race misses when its first 2 images both come from the first 4, with
    # probability 4/8 * 3/7 = 3/14, so it agrees on about 79% of orders; order 0 is the subset as drawn
    losses = torch.tensor([[2.0] * 4 + [0.0] * 4, [1.5] * 8], dtype=torch.float64)
    steps = [{"losses": losses, "suffix_macs": torch.tensor([10, 10]), "name": "toy"}]
    row = simulate_races.simulate(steps, [RaceSettings(2 / 8, 2)], 8, orders=400, seed=0)[0]
    assert 0.70 < row["agreement"] < 0.87 and row["per_step"][0]["as_drawn_agrees"] is False
    assert row == simulate_races.simulate(steps, [RaceSettings(2 / 8, 2)], 8, orders=400, seed=0)[0]


def test_check_counts_the_measured_races_the_replay_reproduces(saved_step, tmp_path) -> None:
    pruner, candidates, step = saved_step
    grid = [RaceSettings(12 / 240, 3), RaceSettings(24 / 240, 4)]
    races = []
    for settings in grid:
        pick = race(pruner.evaluator, [Candidate(c.removal, c.sources) for c in candidates], settings)
        winner, picked = candidates[step["winner"]], next(c for c in candidates if c.removal == pick.removal)
        races.append({"settings": settings.__dict__, "agrees": picked is winner,
                      "regret": (picked.loss - winner.loss) / winner.loss})
    winner_loss = candidates[step["winner"]].loss
    measured = {"sizes": [{"subset": 240, "steps": [{"step": 1, "winner_loss": winner_loss, "races": races}]}]}
    run = tmp_path / "frontier.json"
    run.write_text(json.dumps(measured))
    other_state = dict(step, losses=step["losses"] * 1.01, path=Path("run_b/n240-step001.pt"))  # same file name
    folders = [[dict(step, path=Path("run_a/n240-step001.pt"))], [other_state]]
    assert simulate_races.check(folders, run) == (2, 2)
    assert simulate_races.check(folders[::-1], run) == (2, 2)
    races[1]["agrees"] = not races[1]["agrees"]  # a run whose record the replay does not reproduce
    run.write_text(json.dumps(measured))
    assert simulate_races.check(folders, run) == (1, 2)
    measured["sizes"][0]["steps"][0]["winner_loss"] = winner_loss * 1.001  # another network state: not compared
    run.write_text(json.dumps(measured))
    assert simulate_races.check(folders, run) == (0, 0)


def test_pool_replays_the_runs_of_one_network_as_one_set_of_steps(saved_step, tmp_path) -> None:
    _, _, step = saved_step
    folders = [tmp_path / "run_a", tmp_path / "run_b"]
    noise = torch.Generator().manual_seed(3)
    for folder, losses in zip(folders, [step["losses"], step["losses"] + 0.05 * torch.rand(
            step["losses"].shape, generator=noise, dtype=torch.float64)]):
        folder.mkdir()
        torch.save(dict(step, losses=losses), folder / "n240-step001.pt")
    out = tmp_path / "out"
    assert simulate_races.main([*map(str, folders), "--start-images", "12", "--etas", "2", "--orders", "20",
                                "--pool", "both", "--out", str(out)]) == 0
    rows = {r["folder"]: r for r in json.loads((out / "simulated.json").read_text())["rows"]}
    assert rows["both"]["steps"] == 2 and rows["run_a"]["steps"] == rows["run_b"]["steps"] == 1
    assert rows["both"]["agreement"] == pytest.approx((rows["run_a"]["agreement"] + rows["run_b"]["agreement"]) / 2)
    assert [s["step"] for s in rows["both"]["per_step"]] == ["run_a/n240-step001", "run_b/n240-step001"]
