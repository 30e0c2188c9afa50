#!/usr/bin/env python3
"""Sweep executor overhead: Ray Tune against the serial (in-process) executor.

Runs the same N short, identical trials (unpruned ResNet-20 on a digits subset, one seed
each, 1 torch thread) through ``run_bench.py sweep``'s machinery and prints:

- Ray startup (``ray.init`` of a local cluster),
- per-trial overhead of Ray over serial with 1 trial at a time (actors reused, and not),
- the speedup of 2 concurrent trials over 1 (1 CPU each) on this machine.

    .venv/bin/python benchmarks/bench_sweep_overhead.py [--trials 6] [--epochs 3]

Check ``uptime`` first: on a shared machine the figures move with the load.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPACE = """
fixed:
  model: resnet20
  dataset: digits
  train_subset: {train}
  test_subset: 200
  epochs: {epochs}
seeds: {seeds}
"""


def _run(space: Path, results: Path, name: str, executor: str, max_concurrent: int | None,
         reuse_actors: bool = True) -> tuple[float, float, list[float]]:
    """(Ray init seconds, sweep seconds after init, per-trial run_job wall times)."""
    from harness.job.records import read_json
    from harness.sweep import runner

    sweep = runner.Sweep.create(space, name, results, runner.Resources(executor=executor, cpus_per_trial=1,
                                                                       max_concurrent=max_concurrent))
    init = 0.0
    if executor == "ray":
        start = time.perf_counter()
        from harness.sweep.ray_executor import ray_init

        ray_init(sweep)
        init = time.perf_counter() - start
    patch = contextlib.nullcontext()
    if not reuse_actors:
        from unittest import mock

        from ray import tune

        class NoReuse(tune.TuneConfig):
            def __init__(self, *a, **kw):
                kw["reuse_actors"] = False
                super().__init__(*a, **kw)

        patch = mock.patch.object(tune, "TuneConfig", NoReuse)
    quiet = io.StringIO()
    start = time.perf_counter()
    with patch, contextlib.redirect_stdout(quiet):
        rc = runner.run_sweep(sweep, say=lambda line: None)
    seconds = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"sweep {name} failed (rc {rc}):\n{quiet.getvalue()}")
    walls = [read_json(p)["wall_time_s"] for p in sorted((sweep.root / "records").glob("*.json"))]
    return init, seconds, walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-subset", type=int, default=600)
    parser.add_argument("--speedup-trials", type=int, default=4, help="trials of the 1-vs-2 concurrency runs")
    parser.add_argument("--speedup-epochs", type=int, default=12, help="epochs of those (longer) trials")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    torch.set_num_threads(1)
    print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    n, half = args.trials, max(1, args.trials // 2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def space(count: int, epochs: int = args.epochs, train: int = args.train_subset) -> Path:
            path = tmp / f"bench{count}-{epochs}-{train}.yaml"
            path.write_text(SPACE.format(train=train, epochs=epochs, seeds=list(range(count))))
            return path

        _, serial, serial_walls = _run(space(n), tmp, "serial", "serial", None)
        _, serial_half, _ = _run(space(half), tmp, "serial-half", "serial", None)
        init1, ray1, ray1_walls = _run(space(n), tmp, "ray1", "ray", 1)
        _, ray1_half, _ = _run(space(half), tmp, "ray1-half", "ray", 1)
        _, fresh, _ = _run(space(n), tmp, "ray1-fresh", "ray", 1, reuse_actors=False)
        _, fresh_half, _ = _run(space(half), tmp, "ray1-fresh-half", "ray", 1, reuse_actors=False)
        m = args.speedup_trials
        long = space(m, args.speedup_epochs, 1437)  # the whole digits training split
        _, long1, long1_walls = _run(long, tmp, "long1", "ray", 1)
        init2, long2, long2_walls = _run(long, tmp, "long2", "ray", 2)
    per = lambda full, part: (full - part) / (n - half)  # noqa: E731  marginal seconds per trial
    print(f"{n} identical trials (and {half} for the marginal cost): resnet20 unpruned, digits {args.train_subset} "
          f"train images, {args.epochs} epochs, 1 torch thread each")
    print(f"  serial executor           : {serial:7.2f} s  (marginal {per(serial, serial_half):.2f} s/trial; "
          f"run_job itself {sum(serial_walls) / n:.2f} s/trial)")
    print(f"  ray init (local cluster)  : {init1:7.2f} s  (another start {init2:.2f} s)")
    print(f"  ray, 1 at a time, reused  : {ray1:7.2f} s  (marginal {per(ray1, ray1_half):.2f} s/trial; "
          f"run_job itself {sum(ray1_walls) / n:.2f} s/trial)")
    print(f"  ray, 1 at a time, fresh   : {fresh:7.2f} s  (marginal {per(fresh, fresh_half):.2f} s/trial)")
    fixed = ray1 - n * per(ray1, ray1_half) - (serial - n * per(serial, serial_half))
    print(f"Ray overhead over serial: {per(ray1, ray1_half) - per(serial, serial_half):+.2f} s per trial with actor "
          f"reuse, {per(fresh, fresh_half) - per(serial, serial_half):+.2f} s without; plus {fixed:.1f} s per stage "
          f"(Tuner setup/teardown) and {init1:.1f} s for ray.init")
    print(f"{m} longer trials (all 1437 digits training images, {args.speedup_epochs} epochs), Ray, actors reused:")
    print(f"  1 at a time: {long1:7.2f} s  (run_job itself {sum(long1_walls) / m:.2f} s/trial)")
    print(f"  2 at a time: {long2:7.2f} s  (run_job itself {sum(long2_walls) / m:.2f} s/trial)")
    print(f"speedup of 2 concurrent trials over 1: {long1 / long2:.2f}x wall clock (ideal 2.00x on 2 free cores); "
          f"each trial ran {sum(long2_walls) / sum(long1_walls):.2f}x slower next to another")


if __name__ == "__main__":
    main()
