"""Small helpers shared by test files (not fixtures)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``run_bench.py`` in a subprocess, as a user would."""
    return subprocess.run([sys.executable, str(REPO / "run_bench.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The single error line a bad input must produce (exit code 2, nothing else on stderr)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


# Record keys that differ between equal runs (wall times, where and when, how it was resumed).
TIMING_KEYS = ("time", "_s", "per_s", "checkpoint", "out", "executor", "sweep", "resumed", "env", "latency")


def sweep_records(sweep: Path) -> dict[str, dict]:
    """A sweep folder's records by trial name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((sweep / "records").glob("*.json"))}


def deterministic(record: dict):
    """A record without wall times, paths, host facts: what must match between equal runs."""
    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if not any(s in k for s in TIMING_KEYS)}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o
    return strip(record)


def absolute_paths(obj, where: str = "") -> list[str]:
    """Every string in a JSON document that is an absolute path (``where: value``)."""
    if isinstance(obj, dict):
        return [p for k, v in obj.items() if k not in ("error", "traceback") for p in absolute_paths(v, f"{where}.{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in absolute_paths(v, f"{where}[{i}]")]
    return [f"{where}: {obj}"] if isinstance(obj, str) and obj.startswith("/") else []


def one_error(capsys, argv: list[str]) -> str:
    """Run the CLI in this process: exit code 2 and exactly one ``error:`` line."""
    from harness.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def distinct_resnet20(in_channels: int = 1):
    """A random ResNet-20 (seed 0, eval mode) whose batch norms are not identities, so LAASP's
    candidates have distinct losses."""
    import torch

    from harness.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet20", 10, in_channels).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.3)
    return model
