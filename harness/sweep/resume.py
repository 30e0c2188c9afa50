"""How a trial resumes: from Ray Tune's checkpoint or its own state file, and the log of every
resume, kept in the trial's folder so that a driver killed before the trial's record was written
(the run finished, its sweep record not yet) loses none of them."""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from harness.job.records import read_json, write_json_atomic

RESUME_LOG = "resumed.json"


def take_checkpoint(checkpoint_dir: str | Path | None, state: Path, out: Path) -> dict[str, Any] | None:
    """Put a Tune checkpoint's state.pt in place (it wins over a local one); describe the resume.
    A run that had finished (its ``record.json`` written) takes nothing back: it is not rerun."""
    if (out / "record.json").exists():
        return None
    source = None
    if checkpoint_dir is not None and (Path(checkpoint_dir) / "state.pt").exists():
        tmp = state.with_name(".state.pt.restore")
        shutil.copyfile(Path(checkpoint_dir) / "state.pt", tmp)
        os.replace(tmp, state)
        source = "tune checkpoint"
    elif state.exists():
        source = "state file"
    if source is None:
        return None
    try:
        from harness.job.checkpoint import read_checkpoint

        extra = read_checkpoint(state)["extra_state"]
        return {"from": source, "epochs_trained": extra["epochs_trained"], "stage": extra["stage"],
                "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    except Exception as exc:  # noqa: BLE001 - an unreadable state: start over rather than fail
        print(f"note: {state} is unreadable ({exc}); the trial starts over", file=sys.stderr)
        state.unlink(missing_ok=True)
        return None


def log_resume(out: Path, resumed: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every resume of the trial in ``out`` so far, ``resumed`` (this start's, or None) appended.
    A start that finds the run finished (``record.json``, the sweep record not written) is one."""
    if resumed is None and (out / "record.json").exists():
        resumed = {"from": "finished run", "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    log = read_resume_log(out)
    if resumed is not None:
        log.append(resumed)
        write_json_atomic(out / RESUME_LOG, log)
    return log


def read_resume_log(out: Path) -> list[dict[str, Any]]:
    """The trial's resumes so far (empty for a trial that never restarted)."""
    path = out / RESUME_LOG
    return read_json(path) if path.exists() else []
