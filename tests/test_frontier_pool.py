"""benchmarks/frontier_by_first_round.py: races pooled by their first round's image count."""
from __future__ import annotations

import json
import sys

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import frontier_by_first_round  # noqa: E402
import frontier_records  # noqa: E402


def _race(start: float, eta: int, agrees: bool, regret: float, confidence=None, precision="fp32") -> dict:
    return {"settings": {"start_fraction": start, "eta": eta, "confidence": confidence, "precision": precision},
            "agrees": agrees,
            "regret": regret, "s": 1.0, "peak_mb": 0.0}


def test_races_pool_by_first_round_images_across_folders(tmp_path) -> None:
    # 0.125 of 1,000 and 0.0625 of 2,000 both start on 125 images, but are different cells (subset);
    # the same cell over two steps adds up; a bounded race and a bf16 race are left out
    small = {"how": "resnet20 trained ...", "rows": [], "sizes": [{"subset": 1000, "reference_s": [], "steps": [
        {"races": [_race(0.125, 3, True, 0.0), _race(0.125, 3, False, 0.002, confidence=0.99)]},
        {"races": [_race(0.125, 3, True, 0.0, precision="bf16"), _race(0.125, 3, False, 0.004)]}]}]}
    large = {"how": "resnet56 trained ...", "rows": [], "sizes": [{"subset": 2000, "reference_s": [], "steps": [
        {"races": [_race(0.0625, 3, True, 0.0)]}]}]}
    for name, frontier in (("a", small), ("b", large)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "frontier.json").write_text(json.dumps(frontier))
    cells = frontier_by_first_round.pooled(tmp_path)
    assert set(cells) == {(125, "resnet20", 1000, 3), (125, "resnet56", 2000, 3)}
    assert cells[(125, "resnet20", 1000, 3)]["agree"] == 1 and cells[(125, "resnet20", 1000, 3)]["steps"] == 2
    text = frontier_by_first_round.table(cells)
    assert "| 125 | resnet20 | 1000 | 3 | 1/2 | 0.400 |" in text and "| 125 | resnet56 | 2000 | 3 | 1/1 | 0.000 |" in text


def test_a_step_measured_by_two_runs_counts_once(tmp_path) -> None:
    # the same fixture, subset, step and exact winner's loss: the same network state, counted once,
    # whichever start fraction gave its 625-image first round; a different state counts
    how = "resnet20 trained 5 epochs (seed 0); LAASP exact run, FLOPs step 1.0%; up to 4 steps"
    step = {"step": 1, "winner_loss": 1.25, "races": [_race(0.0625, 3, True, 0.0)]}
    other = {"step": 2, "winner_loss": 1.5, "races": [_race(None, 3, False, 0.001)]}
    for name, steps in (("first", [step]), ("rerun", [dict(step, races=[_race(None, 3, True, 0.0)]), other])):
        (tmp_path / name).mkdir()
        size = {"subset": 10000, "reference_s": [], "steps": steps}
        (tmp_path / name / "frontier.json").write_text(json.dumps({"how": f"{how}, run {name}", "rows": [],
                                                                   "sizes": [size]}))
    cells = frontier_by_first_round.pooled(tmp_path)
    assert cells[(625, "resnet20", 10000, 3)] == {"agree": 1, "steps": 2, "regrets": [0.0, 0.001]}


def test_the_lower_bound_reaches_95_percent_at_59_agreeing_steps() -> None:
    assert frontier_by_first_round.lower_bound(58, 58) < 0.95 < frontier_by_first_round.lower_bound(59, 59)
    assert frontier_by_first_round.lower_bound(0, 5) == 0.0
    # a miss lowers it: 13 of 13 against 12 of 13
    assert frontier_by_first_round.lower_bound(12, 13) < frontier_by_first_round.lower_bound(13, 13)
    text = frontier_by_first_round.pooled_table({
        (625, "resnet20", 5000, 3): {"agree": 3, "steps": 3, "regrets": [0]},
        (625, "resnet56", 2000, 3): {"agree": 2, "steps": 3, "regrets": [0]}})
    assert "| 625 | 3 | 5/6 |" in text


def test_a_race_recorded_before_the_default_changed_keeps_its_625_image_first_round() -> None:
    # start_fraction None was LAASP's default, 625 images until 2026-12-03; newer rows say which
    old = _race(None, 3, True, 0.0)
    assert frontier_records.recorded_race(old, 10_000).first_round(10_000) == 625
    assert frontier_records.recorded_race(old, 500).first_round(500) == 500  # a smaller subset: all of it
    assert frontier_records.recorded_race(dict(old, first_round=800), 10_000).first_round(10_000) == 800
    assert frontier_records.recorded_race(_race(0.125, 3, True, 0.0), 2000).first_round(2000) == 250


def test_a_saved_steps_file_name_reads_back_as_its_subset_and_step(tmp_path):
    path = frontier_records.losses_file(tmp_path, 10_000, 7)
    assert path.parent == tmp_path
    assert frontier_records.losses_file_key(path) == (10_000, 7)
    assert frontier_records.losses_file_key(tmp_path / "notes.pt") is None  # another file in the folder
