"""Trained networks for the selection benchmarks: a model trained a few epochs on real CIFAR-10,
made once and kept under ``.cache/fixtures/`` (outside git), so candidate losses are those of a
real run rather than of random weights (where the losses are far apart and every method agrees)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EPOCHS, TRAIN_SUBSET = 5, 10_000  # the frontier's fixture; the selection benchmark reuses it


def trained_fixture(data_root: str, model: str, epochs: int = EPOCHS, train_subset: int = TRAIN_SUBSET,
                    seed: int = 0, device: str = "cpu", say=print) -> Path:
    """The checkpoint of ``model`` trained ``epochs`` on ``train_subset`` real CIFAR-10 images."""
    from harness.job.options import job_config_from_options
    from harness.job.run import run_job

    out = REPO / ".cache" / "fixtures" / f"{model}-cifar10-e{epochs}-n{train_subset}-s{seed}"
    if not (out / "checkpoint.pt").exists():
        say(f"training the fixture {out.relative_to(REPO)} ({epochs} epochs on {train_subset} images)...")
        cfg = job_config_from_options({"model": model, "dataset": "cifar10", "data_root": data_root,
                                       "epochs": epochs, "train_subset": train_subset, "test_subset": 500,
                                       "seed": seed, "device": device, "out": str(out), "quiet": True})
        record = run_job(cfg)
        say(f"fixture: top-1 {record['final']['top1']:.2f}% after {record['epochs_trained']} epochs")
    return out / "checkpoint.pt"
