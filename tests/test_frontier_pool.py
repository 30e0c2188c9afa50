"""benchmarks/frontier_by_first_round.py: races pooled by their first round's image count."""
from __future__ import annotations

import json
import sys

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import frontier_by_first_round  # noqa: E402


def _race(start: float, eta: int, agrees: bool, regret: float, confidence=None) -> dict:
    return {"settings": {"start_fraction": start, "eta": eta, "confidence": confidence}, "agrees": agrees,
            "regret": regret, "s": 1.0, "peak_mb": 0.0}


def test_races_pool_by_first_round_images_across_folders(tmp_path) -> None:
    # 0.125 of 1,000 and 0.0625 of 2,000 both start on 125 images, but are different cells (subset);
    # the same cell over two steps adds up; a bounded race is left out
    small = {"how": "resnet20 trained ...", "rows": [], "sizes": [{"subset": 1000, "reference_s": [], "steps": [
        {"races": [_race(0.125, 3, True, 0.0), _race(0.125, 3, False, 0.002, confidence=0.99)]},
        {"races": [_race(0.125, 3, False, 0.004)]}]}]}
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
