"""Rewrite the absolute machine paths that older records and sweep.json files hold into the
portable form new ones are written in (`harness.job.records.portable_path`): what the run
wrote relative to the folder the record belongs to (a sweep's folder, a run's own folder), what
it read relative to the repository. ``run_bench.py migrate-paths FOLDER`` runs it.

Where a file was written is inferred from the file itself: the run's folder from its
``config.out`` (or ``checkpoint``), the repository it ran in from the first path through one of
its top-level folders (``results/``, ``.cache/``, ``search_spaces/``), else this repository.
Every rewrite is listed, so it can be checked.
"""
from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Any, Iterator

from harness.data import REPO_ROOT
from harness.job.records import read_json, write_json_atomic

REPO_MARKERS = ("results", ".cache", "search_spaces")
SKIP_KEYS = ("error", "traceback")  # free text that may mention a path, not a path


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in SKIP_KEYS:
                yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def _is_abs(value: str) -> bool:
    return value.startswith("/") and "\n" not in value


def _old_repo(obj: Any) -> str:
    for value in filter(_is_abs, _strings(obj)):
        parts = PurePosixPath(value).parts
        for i, part in enumerate(parts[1:], start=1):
            if part in REPO_MARKERS:
                return str(PurePosixPath(*parts[:i]))
    return str(REPO_ROOT)


def _old_base(record: dict[str, Any], sweep_record: bool) -> str | None:
    """The folder a record's outputs were relative to, where it was written."""
    out = (record.get("config") or {}).get("out")
    ckpt = record.get("checkpoint")
    if isinstance(out, str) and _is_abs(out):
        folder = PurePosixPath(out)
    elif isinstance(ckpt, str) and _is_abs(ckpt):
        folder = PurePosixPath(ckpt).parent
    else:
        return None
    return str(folder.parent.parent if sweep_record else folder)  # <sweep>/trials/<name> -> <sweep>


def _rewrite(obj: Any, old_base: str | None, old_repo: str, changes: list[tuple[str, str]]) -> Any:
    if isinstance(obj, dict):
        return {k: v if k in SKIP_KEYS else _rewrite(v, old_base, old_repo, changes) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rewrite(v, old_base, old_repo, changes) for v in obj]
    if isinstance(obj, str) and _is_abs(obj):
        if old_base and (obj == old_base or obj.startswith(old_base.rstrip("/") + "/")):
            new = os.path.relpath(obj, old_base)
        else:
            new = os.path.relpath(obj, old_repo)
        changes.append((obj, new))
        return new
    return obj


def migrate_file(path, kind: str) -> list[tuple[str, str]]:
    """Rewrite one file in place (``kind``: sweep_record, run_record or sweep_meta); the changes made."""
    data = read_json(path)
    old_base = None if kind == "sweep_meta" else _old_base(data, kind == "sweep_record")
    changes: list[tuple[str, str]] = []
    new = _rewrite(data, old_base, _old_repo(data), changes)
    if changes:
        write_json_atomic(path, new)
    return changes


def migrate_folder(folder) -> dict[str, list[tuple[str, str]]]:
    """Every record, standalone run record and sweep.json under a results folder; changes per file."""
    from pathlib import Path

    folder = Path(folder)
    files: list[tuple[Path, str]] = []
    if (folder / "sweep.json").is_file():
        files.append((folder / "sweep.json", "sweep_meta"))
    files += [(p, "sweep_record") for p in sorted((folder / "records").glob("*.json")) if not p.name.startswith(".")]
    files += [(p, "run_record") for p in sorted(folder.rglob("record.json"))]
    return {str(p): changes for p, kind in files if (changes := migrate_file(p, kind))}
