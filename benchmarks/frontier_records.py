"""The races a `bench_approx_frontier.py` run recorded, read back as the races they were."""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from laasp.racing import RaceSettings  # noqa: E402

# A recorded race without "first_round" ran before 2026-12-03, when a start fraction of None
# (LAASP's default) meant a 625-image first round; the default is 800 images since.
LEGACY_START_IMAGES = 625


def recorded_race(race: dict, subset: int) -> RaceSettings:
    """The race a frontier.json row ran on a ``subset``-image loss subset, its first round explicit."""
    s = race["settings"]
    first = race.get("first_round")
    if first is None and s["start_fraction"] is None:
        first = min(subset, LEGACY_START_IMAGES)
    start = s["start_fraction"] if first is None else first / subset
    return RaceSettings(start, s["eta"], s["confidence"], s.get("precision", "fp32"))


def losses_file(folder: Path, subset: int, step: int) -> Path:
    """Where ``bench_approx_frontier.py --save-losses`` keeps one step's per-image losses."""
    return folder / f"n{subset}-step{step:03d}.pt"


def losses_file_key(path: Path) -> tuple[int, int] | None:
    """(subset, step) of a `losses_file` name, or None for a file named otherwise."""
    named = re.fullmatch(r"n(\d+)-step(\d+)\.pt", path.name)
    return (int(named[1]), int(named[2])) if named else None
