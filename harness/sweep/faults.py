"""Fault injection, for the tests that kill a sweep at chosen moments.

``LAASP_FAULT=POINT:N`` (several: comma-separated) makes the process that reaches ``POINT``
for the N-th time SIGKILL itself (its whole process group when it leads one, as
``kill -9 -PGID`` would; a Ray trial worker leads its own), at most once per sweep folder (a
marker file ``.faults/POINT-N`` stops a restarted process from firing again). Unset, every
call is a dictionary lookup. Points, and the process that reaches them:

- ``trial_report``: a trial's state was saved and reported (the process that trains: the serial
  driver, or a Ray trial worker)
- ``driver_report``: the Ray driver received a trial's report (Ray executor only)
- ``record_write``: a sweep record is in its temporary file, not yet renamed into place
  (whoever writes it: the serial driver, a Ray worker, the Ray driver for stopped trials)
- ``trial_start`` / ``trial_end``: the driver starts a trial / has its record
- ``stage_end``: a stage finished and the next has not started (driver)
- ``study_ask`` / ``study_tell``: the driver asked Optuna for a trial / told it one's outcome
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "LAASP_FAULT"
POINTS = ("trial_report", "driver_report", "record_write", "trial_start", "trial_end", "stage_end", "study_ask",
          "study_tell")
_hits: dict[str, int] = {}


def planned() -> dict[str, int]:
    """The faults ``LAASP_FAULT`` asks for: point -> the hit that fires."""
    out = {}
    for item in filter(None, (os.environ.get(ENV) or "").split(",")):
        point, _, n = item.strip().partition(":")
        if point not in POINTS or not n.isdigit() or int(n) < 1:
            raise ValueError(f"{ENV}={item!r}: use POINT:N with POINT one of {', '.join(POINTS)} and N >= 1")
        out[point] = int(n)
    return out


def fault(point: str, root: str | Path) -> None:
    """Count a hit of ``point``; SIGKILL this process (group) on the planned one."""
    if ENV not in os.environ:
        return
    target = planned().get(point)
    if target is None:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] != target:
        return
    marker = Path(root) / ".faults" / f"{point}-{target}"
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch(exist_ok=False)
    except FileExistsError:
        return  # fired once already (a restarted worker, a resumed driver with the same environment)
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
