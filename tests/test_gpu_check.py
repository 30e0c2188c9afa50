"""benchmarks/gpu_check.sh: without a GPU it says so and exits 0; its summary and synthetic data
work (the GPU sections themselves run only where a GPU is lent)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a GPU machine
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--out", str(tmp_path / "gpu")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "gpu_check: no CUDA GPU here" in proc.stdout and "nothing to check" in proc.stdout
    assert not (tmp_path / "gpu").exists()


def test_synthetic_images_load_as_cifar10(tmp_path) -> None:
    from harness.data import DataConfig, load_dataset

    folder = gpu_check.synthetic_cifar(tmp_path / "syn", train=30, test=20)
    data = load_dataset(DataConfig("cifar10", str(folder)))
    assert (data.train_size, data.test_size, data.image_size, data.num_classes) == (30, 20, 32, 10)
    assert data.loss_subset(30, seed=0)[0].shape == (30, 3, 32, 32)


def test_summary_names_every_section_and_its_figures(tmp_path) -> None:
    summary = {
        "date": "2026-12-01 10:00", "commit": "abc1234", "budget_s": 480, "data": "synthetic CIFAR-shaped JPEGs",
        "machine": {"gpu": "NVIDIA H200", "compute_capability": "9.0", "gpu_memory_gib": 139.8, "gpus": 1,
                    "torch": "2.11.0", "cuda": "13.0", "cudnn": 91000, "python": "3.12.3", "cpus": 16},
        "sections": {
            "smoke_tests": {"status": "ok", "seconds": 61.0, "result": {
                "ok": True, "files": ["tests/test_cuda.py"], "counts": {"passed": 12, "skipped": 1}}},
            "smoke_laasp": {"status": "ok", "seconds": 20.0, "result": {
                "ok": True, "top1": 91.5, "flops_reduction": 0.31, "steps": 4, "precision": {"compute": "bf16"},
                "device_name": "NVIDIA H200", "wall_time_s": 14.2, "selection_s": 1.1}},
            "throughput": {"status": "ok", "seconds": 40.0, "result": {
                "ok": True, "model": "resnet56", "ours_img_s": 21000.0, "reference_img_s": 7000.0, "speedup": 3.0,
                "ours": "data on the device, batch augmentation, channels_last, bf16", "reference_workers": 8,
                "compiled_img_s": 30000.0, "compiled_vs_eager": 30000 / 21000, "compile_s": 41.0}},
            "sweep": {"status": "failed", "seconds": 90.0, "result": {
                "ok": False, "trials": [{"status": "ok", "device": "cuda", "gpu_memory_fraction": 0.25}] * 3
                + [{"status": "failed", "device": None, "gpu_memory_fraction": None}],
                "sweep_wall_s": 80.0, "sum_trial_wall_s": 200.0, "concurrency": 2.5}},
            "late_start": {"status": "skipped", "reason": "20 s of the budget left"},
            "selection": {"status": "ok", "seconds": 200.0, "result": {
                "ok": True, "model": "resnet56", "subset": 10000, "weights": "trained", "reference_s": 60.0,
                "exact_s": 6.0, "exact_speedup": 10.0, "exact_equals_reference": 1, "steps": 1,
                "per_step": [{"candidates": 107}], "rows_per_forward": 2048, "approx_s": 1.5, "approx_speedup": 40.0,
                "race": {"start_fraction": None, "eta": 3, "confidence": None},
                "race_label": "first round 625 images, eta 3, no bound", "approx_equals_exact": 1}},
            "late": {"status": "timeout", "seconds": 300.2, "limit_s": 300},
        }}
    gpu_check.write_summary(tmp_path, summary)
    text = (tmp_path / "summary.md").read_text()
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert "NVIDIA H200 (compute capability 9.0" in text and "synthetic" in text
    assert "| smoke_tests | ok | 61.0 | 12 passed, 0 failed, 1 skipped" in text
    assert "top-1 91.50%" in text and "21,000 img/s (bf16)" in text and "3.00x" in text
    assert "| sweep | failed |" in text and "3/4 trials ok" in text and "concurrency 2.50" in text
    assert "| late_start | skipped |  | 20 s of the budget left |" in text
    assert "| late | timeout | 300.2 | stopped at its 300 s limit" in text
    assert "resnet56: ours 21,000 img/s" in text and "compiled 30,000 img/s (1.43x eager, compilation ~41 s)" in text
    assert "ours exact 6.0 s (10.0x)" in text and "approximate 1.5 s (40.0x, first round 625 images, eta 3, no bound), same pick as exact 1/1" in text


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_machine_description() -> None:
    m = gpu_check.machine()
    assert m["gpus"] >= 1 and m["gpu_memory_gib"] > 0


def test_sweep_section_reads_the_trials_records(tmp_path, monkeypatch) -> None:
    """The sweep runs as `run_bench.py sweep ... --gpus-per-trial 0.25`; its records make the result."""
    import argparse

    calls = []

    def fake_run(cmd, **kwargs):
        calls.append((cmd, kwargs["env"]["CUDA_VISIBLE_DEVICES"]))
        records = tmp_path / "sweep" / "gpu_sweep" / "records"
        records.mkdir(parents=True)
        for i, pruner in enumerate([None, "laasp", "l1_uniform", "fpgm"]):
            (records / f"{i:03d}.json").write_text(json.dumps({
                "trial_id": f"{i:03d}", "pruner": pruner, "status": "ok", "final": {"top1": 90.0 + i},
                "env": {"device": "cuda", "gpu_memory_fraction": 0.25}, "wall_time_s": 30.0}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(gpu_check.subprocess, "run", fake_run)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    result = gpu_check.sweep(argparse.Namespace(work=str(tmp_path)))
    (cmd, visible), = calls
    assert cmd[1:3] == ["run_bench.py", "sweep"] and "--gpus-per-trial" in cmd and cmd[cmd.index("--gpus-per-trial") + 1] == "0.25"
    assert visible == "0" and "pruner: [none, laasp, l1_uniform, fpgm]" in (tmp_path / "gpu_sweep.yaml").read_text()
    assert result["ok"] and len(result["trials"]) == 4 and result["sum_trial_wall_s"] == 120.0
    assert result["concurrency"] == pytest.approx(120.0 / result["sweep_wall_s"])
    assert {t["gpu_memory_fraction"] for t in result["trials"]} == {0.25}
