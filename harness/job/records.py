"""``record.json``: the contract every later part (sweeps, tables, plots) reads.

A record is self-contained: config, environment, per-epoch history, final metrics, FLOPs and
params before/after with the counter that produced them, epochs actually trained, wall time.
Records are written atomically so a crash never leaves half a file behind.

Paths in a record are never absolute machine paths: what the run wrote (its folder, its
checkpoint) is relative to the folder the record belongs to (a run's ``--out``, a sweep's
folder), what it read (data, a start checkpoint) relative to the repository
(`portable_path`); `resolve_path` turns them back into paths of this machine.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from harness.data import REPO_ROOT

RECORD_VERSION = 1
FLOPS_COUNTER = "harness.prune.flops.count_cost: multiply-accumulates of Conv2d and Linear layers, batch 1"


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples and paths to plain JSON; NaN/inf become null (JSON has neither)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def portable_path(path: str | Path | None, base: str | Path | None = None) -> str | None:
    """``path`` as records store it: relative to ``base`` when it lies inside it (``"."`` for
    ``base`` itself), else relative to the repository (``../shared/data/cifar10-jpeg.zip``)."""
    if path is None:
        return None
    absolute = os.path.abspath(os.path.expanduser(str(path)))
    if base is not None:
        root = os.path.abspath(str(base))
        if absolute == root or absolute.startswith(root.rstrip(os.sep) + os.sep):
            return os.path.relpath(absolute, root)
    return os.path.relpath(absolute, REPO_ROOT)


def resolve_path(path: str | Path | None, base: str | Path | None = None) -> Path | None:
    """A recorded path on this machine: relative to ``base`` (or the repository when None);
    absolute paths (records written before paths were portable) are kept as they are."""
    if path is None:
        return None
    return Path(os.path.normpath(Path(base if base is not None else REPO_ROOT) / Path(path).expanduser()))


def ensure_writable_folder(path: str | Path, what: str, keep: bool = True) -> Path:
    """Check a file can be written in folder ``path`` (creating it and its parents); a `UserError`
    naming ``what`` (e.g. ``--out``) otherwise, before anything is computed. With ``keep=False``
    the folders this check created are removed again (nothing is left behind by a refused run)."""
    from harness.errors import UserError

    folder = Path(path).expanduser()
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot write there ({exc.strerror or exc}); choose a folder you can "
                        "write to") from None
    if not keep:
        for created in missing:  # deepest first
            created.rmdir()
    return folder


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(to_jsonable(obj), f, indent=2, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def cost_entry(before: int, after: int) -> dict[str, float | int]:
    return {"before": int(before), "after": int(after), "reduction": 1.0 - after / before if before else 0.0}


# The epochs the papers' "best" accuracy is chosen from. The LAASP authors' scripts keep
# model_best.pth.tar from the last call of their training loop: every epoch of an unpruned run,
# the epochs after pruning of a pruned one (their recovery epochs are earlier calls whose best
# the final phase overwrites). A tie goes to the later epoch, as their checkpoint is
# overwritten when an epoch equals the best so far.
FINAL_PHASE_OF_PRUNED = "finetune"


def best_epoch(history: list[dict[str, Any]], pruned: bool) -> dict[str, Any] | None:
    """The best test top-1 of the run's final phase, with its top-5 and where it happened.

    Pruned runs: their ``finetune`` epochs (or, when they have none, the trailing epochs of
    their last phase); unpruned runs: every epoch. None when there is no epoch to choose from.
    Chosen on the test set, as the papers do: an optimistic number, reported beside ``final``.
    """
    entries = [e for e in history if isinstance(e, dict) and e.get("test_top1") is not None]
    if pruned and entries:
        finetune = [e for e in entries if e.get("phase") == FINAL_PHASE_OF_PRUNED]
        if not finetune:
            last = entries[-1].get("phase")
            start = len(entries)
            while start > 0 and entries[start - 1].get("phase") == last:
                start -= 1
            finetune = entries[start:]
        entries = finetune
    if not entries:
        return None
    best = max(reversed(entries), key=lambda e: e["test_top1"])  # reversed: a tie goes to the later epoch
    return {"top1": best["test_top1"], "top5": best.get("test_top5"), "loss": best.get("test_loss"),
            "epoch": best.get("epoch"), "schedule_epoch": best.get("schedule_epoch"), "phase": best.get("phase"),
            "epochs_considered": len(entries)}
