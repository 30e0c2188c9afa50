"""Finding the records of a results folder, and reading the fields tables and plots need.

A folder is either a sweep (``results/<sweep>/records/*.json``, one record per trial, with
``status`` "ok" or "failed") or any tree of single runs (``<folder>/**/record.json``, as
``run_bench.py train/run --out <folder>/<name>`` writes them). Everything here reads only
what the records say: nothing is re-measured or filled in.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.job.groups import RENAMED, group_of, pruner_of, record_field  # noqa: F401  (read here by tables and plots)

SOURCE_KEY = "_source"  # added to each loaded record: the file it came from
# Loaded records keep the registered pruner's name here; their ``pruner`` becomes the group the
# tables, plots and comparisons put them in (`group_of`): a variant of a pruner is its own group.
REGISTERED_KEY = "_registered_pruner"


def find_record_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; pass a results folder such as results/<sweep> "
                        "(holding records/*.json or */record.json)")
    sweep = sorted(p for p in (folder / "records").glob("*.json") if not p.name.startswith("."))
    if sweep:
        return sweep
    return sorted(p for p in folder.rglob("record.json") if not any(part.startswith(".") for part in p.parts[-2:]))


def load_records(folder: str | Path) -> list[dict[str, Any]]:
    """Every record in ``folder`` (each with ``_source`` = its path); UserError when there are none."""
    files = find_record_files(folder)
    if not files:
        raise UserError(f"{folder}: no records found (looked for records/*.json and */record.json); pass a sweep "
                        f"folder such as results/<sweep>, or write runs into it with `run_bench.py train/run --out "
                        f"{folder}/<name>`")
    records = []
    for path in files:
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: not a readable JSON record ({exc}); fix or remove the file") from exc
        if not isinstance(record, dict) or "model" not in record:
            raise UserError(f"{path}: not a run record (no 'model' field); remove it from the records folder")
        record[SOURCE_KEY] = str(path)
        record[REGISTERED_KEY] = pruner_of(record)
        record["pruner"] = group_of(record)
        records.append(record)
    return records


# ---------------------------------------------------------------- fields
def status(record: dict[str, Any]) -> str:
    """"ok" or "failed"; a record without ``status`` (a single run) is ok when it has final metrics."""
    s = record.get("status")
    if s is not None:
        return str(s)
    return "ok" if isinstance(record.get("final"), dict) else "failed"


def is_ok(record: dict[str, Any]) -> bool:
    return status(record) == "ok" and isinstance(record.get("final"), dict)


def is_unpruned(record: dict[str, Any]) -> bool:
    return record.get("pruner") is None


def dataset_of(record: dict[str, Any]) -> str:
    return record.get("dataset") or record_field(record, "config", "data", "dataset") or "?"


def target_of(record: dict[str, Any]) -> float | None:
    """The requested FLOPs reduction (fraction); None for an unpruned run."""
    if is_unpruned(record):
        return None
    value = record_field(record, "config", "pruner_config", "target_flops")
    if value is None:
        value = record.get("target_flops")
    return None if value is None else float(value)


def epochs_of(record: dict[str, Any]) -> int | None:
    """Epochs actually trained, the init checkpoint's included for a three-stage run (``init``)."""
    epochs = record.get("epochs_trained")
    if epochs is None:
        return None
    init = record.get("init") or {}
    return int(epochs) + int(init.get("epochs_trained") or 0)


def metric(record: dict[str, Any], *path: str) -> float | None:
    """A finite number at ``path`` in the record, else None (JSON stores NaN as null)."""
    value = record_field(record, *path)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


METRICS = ("final", "best")  # final epoch (default) or the best epoch of the final phase (the papers')


def best_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """The record's ``best`` entry; records written before it existed get it from their history
    (the same rule, `harness.job.records.best_epoch`), else None."""
    best = record.get("best")
    if isinstance(best, dict):
        return best
    from harness.job.records import best_epoch

    history = record.get("history")
    return best_epoch(history, not is_unpruned(record)) if isinstance(history, list) else None


def accuracy(record: dict[str, Any], which: str, key: str) -> float | None:
    """``top1``/``top5``/``loss`` of the final evaluation (``which`` "final") or of the best epoch."""
    if which == "best":
        return metric(best_of(record) or {}, key)
    return metric(record, "final", key)


def label(record: dict[str, Any]) -> str:
    """A short name of the run for legends and footnotes."""
    if record.get("trial_id"):
        return str(record["trial_id"])
    source = Path(record.get(SOURCE_KEY, "?"))
    return source.stem if source.parent.name == "records" else source.parent.name  # records/<x>.json, <x>/record.json


def config_key(record: dict[str, Any]) -> str:
    """The run's settings minus seed and output/display ones: equal keys = the same experiment."""
    cfg = dict(record.get("config") or {})
    for key in ("seed", "out", "progress", "device"):
        cfg.pop(key, None)
    if cfg.get("scratch") is not None:  # architecture, epochs and milestones follow each seed's source
        cfg.pop("scratch")
        cfg.pop("epochs", None)
        cfg["optim"] = {k: v for k, v in (cfg.get("optim") or {}).items() if k != "milestones"}
    return json.dumps(cfg, sort_keys=True, default=str)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename (no half-written file)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise UserError(f"{path}: folder {path.parent} does not exist; create it or choose another output path")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write there ({exc.strerror or exc}); choose another output path") from None
    return path
