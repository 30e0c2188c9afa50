"""``record.json``: the contract every later part (sweeps, tables, plots) reads.

A record is self-contained: config, environment, per-epoch history, final metrics, FLOPs and
params before/after with the counter that produced them, epochs actually trained, wall time.
Records are written atomically so a crash never leaves half a file behind.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

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
