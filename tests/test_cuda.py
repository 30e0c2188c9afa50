"""CUDA-only checks: what the CPU tests cannot see. Skipped without a GPU; `benchmarks/gpu_check.sh`
runs them first on a lent one (``pytest -m cuda``).

- LAASP's first picks on CUDA equal the CPU run's (candidate losses in true fp32, TF32 off);
- a run's state saved on CUDA resumes on a CPU, and records both precisions;
- one AMP training step per precision (fp16 with its gradient scaler kept for the run);
- the memory probe and row plan at 224 px (ResNet-50, MobileNetV2) keep a pass within its budget;
- the CUDA generator round-trips; a fractional share caps the allocator;
- the deterministic mode repeats a CUDA run exactly, and eval reproduces its record.
"""
from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from harness.data import DataConfig, load_dataset
from harness.job.checkpoint import read_checkpoint
from harness.job.run import run_job
from harness.models import build_model
from harness.prune.prunable import PrunableNetwork
from harness.train import device as dev
from harness.train.device import Precision, resolve_precision
from harness.train.engine import Engine, OptimConfig, TrainingState
from harness.train.repro import capture_rng, restore_rng, seed_everything
from laasp import selection
from laasp.config import LAASPConfig
from laasp.pruner import LAASP
from laasp.rows import INDEX_LIMIT
from laasp.selection import Candidate, CandidateEvaluator
from tests.helpers import REPO, run_cli
from tests.test_laasp import _digits_like, _randomised
from tests.test_resume import Interrupt, _config

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

CUDA = torch.device("cuda")
GIB = 2**30


@pytest.fixture
def mixed_precision_flags():
    """TF32 on for convolutions, as a mixed-precision run leaves it; put back after."""
    saved = (dev.tf32_state(), torch.backends.cudnn.benchmark)
    Precision(CUDA).configure()
    yield
    dev.set_tf32_state(saved[0])
    torch.backends.cudnn.benchmark = saved[1]


def test_laasp_first_picks_on_cuda_equal_cpu(mixed_precision_flags) -> None:
    cpu_model = _randomised("resnet20", in_channels=1)
    gpu_model = copy.deepcopy(cpu_model).to(CUDA).to(memory_format=torch.channels_last)
    x, y = _digits_like(n=96)
    cfg = LAASPConfig(target_flops=0.3, chunk_size=48)
    runs = []
    for model, device in ((cpu_model, "cpu"), (gpu_model, "cuda")):
        pruner = LAASP(model, cfg, x.to(device), y.to(device), 8, 1)
        runs.append([pruner.step() for _ in range(3)])
    for a, b in zip(*runs):
        assert (b.layer, b.criterion, b.removed) == (a.layer, a.criterion, a.removed)
        assert b.loss == pytest.approx(a.loss, rel=1e-5)  # TF32 would put ~1e-3 of noise here


def test_state_saved_on_cuda_resumes_on_cpu(tmp_path) -> None:
    cfg = replace(_config(tmp_path), device="cuda")
    gpu_precision = resolve_precision("auto", CUDA)

    def report(entry, state_path):
        if entry["phase"] == "recover":
            raise Interrupt

    with pytest.raises(Interrupt):
        run_job(cfg, report=report, state_path=tmp_path / "state.pt")
    extra = read_checkpoint(tmp_path / "state.pt")["extra_state"]
    assert extra["precisions"] == [gpu_precision] and extra["cuda_rng"].dtype == torch.uint8
    assert (extra["grad_scaler"] is not None) == (gpu_precision == "fp16")
    record = run_job(replace(cfg, device="cpu"), state_path=tmp_path / "state.pt")
    assert record["env"]["device"] == "cpu" and record["target_reached"]
    assert record["precision"]["compute"] == "fp32" and record["precision"]["earlier"] == [gpu_precision]
    assert len(record["history"]) == record["epochs_trained"]


@pytest.mark.parametrize("mode", ["bf16", "fp16", "fp32"])
def test_amp_training_step(mode) -> None:
    if mode == "bf16" and resolve_precision("auto", CUDA) != "bf16":
        pytest.skip("this GPU has no native bf16")
    seed_everything(0)
    precision = Precision(CUDA, mode=mode)
    precision.configure()
    data = load_dataset(DataConfig("digits"), CUDA)
    model = precision.prepare_model(build_model("resnet20", data.num_classes, data.in_channels))
    before = [p.detach().clone() for p in model.parameters()]
    engine = Engine(data, OptimConfig(lr=0.05, batch_size=64), precision, 0, progress=False)
    state = TrainingState(model)
    engine.run_epochs(state, range(2), "train")
    scaler = state.scaler
    engine.run_epochs(state, [1], "recover", fresh_optimizer=True)
    assert state.scaler is scaler and scaler.is_enabled() == (mode == "fp16")
    if mode == "fp16":
        assert scaler.get_scale() > 0
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()) if p.dim() > 1)
    assert state.history[-1]["test_top1"] > 50 and all(math.isfinite(h["train_loss"]) for h in state.history)


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2"])
def test_memory_probe_keeps_a_pass_within_its_budget(name, monkeypatch) -> None:
    torch.manual_seed(0)
    model = build_model(name, 10, 3).to(CUDA).to(memory_format=torch.channels_last).eval()
    x, y = torch.randn(48, 3, 224, 224, device=CUDA), torch.randint(0, 10, (48,), device=CUDA)
    evaluator = CandidateEvaluator(model, x, y, chunk_size=16)
    assert evaluator.profile.measured and evaluator.profile.bytes_per_row > 0
    net = PrunableNetwork(model, 224, 3)
    layers = net.layers[:: max(1, len(net.layers) // 12)]
    candidates = [Candidate(net.removal(layer, [0, 1]), [(layer.name, "l1")]) for layer in layers]
    budget = 3 * GIB
    monkeypatch.setattr(selection, "available_bytes", lambda device: budget)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    evaluator.losses(candidates)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - base <= budget
    chunk, rows = evaluator.plan
    assert rows * evaluator.profile.largest <= INDEX_LIMIT and rows < 2048
    assert all(c.images == 48 and c.loss == c.loss for c in candidates)
    monkeypatch.undo()
    evaluator.losses([Candidate(c.removal, c.sources) for c in candidates])  # the real free memory
    assert evaluator.plan[1] * evaluator.profile.largest <= INDEX_LIMIT


def test_cuda_rng_round_trip() -> None:
    torch.cuda.manual_seed(7)
    saved = capture_rng(CUDA)
    first = torch.rand(5, device=CUDA)
    torch.cuda.manual_seed(123)
    restore_rng(saved, CUDA)
    assert torch.equal(torch.rand(5, device=CUDA), first)


def test_fractional_share_caps_the_allocator() -> None:
    """In a child process: the cap is process-wide, and an allocation over it must fail."""
    code = """
import torch
from harness.train.memory import available_bytes, cap_process_share
total = torch.cuda.get_device_properties(0).total_memory
assert cap_process_share(0.25, 0)
assert available_bytes(torch.device("cuda", 0)) <= 0.25 * total
try:
    torch.empty(int(0.3 * total), dtype=torch.uint8, device="cuda")
except torch.OutOfMemoryError:
    print("capped")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "capped", proc.stderr


def test_deterministic_cuda_runs_repeat_and_eval_reproduces_the_record(tmp_path) -> None:
    args = ["train", "--model", "resnet20", "--dataset", "digits", "--epochs", "2", "--train-subset", "600",
            "--device", "cuda", "--deterministic", "--quiet"]
    records = []
    for name in ("a", "b"):
        proc = run_cli(*args, "--out", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        records.append(json.loads((tmp_path / name / "record.json").read_text()))
    keys = ("train_loss", "train_top1", "test_top1", "test_loss")
    assert [{k: h[k] for k in keys} for h in records[0]["history"]] == [{k: h[k] for k in keys}
                                                                      for h in records[1]["history"]]
    assert records[0]["precision"]["deterministic"] and records[0]["env"]["device"].startswith("cuda")
    proc = run_cli("eval", str(tmp_path / "a" / "checkpoint.pt"), "--device", "cuda", "--json")
    assert proc.returncode == 0, proc.stderr
    evaluated = json.loads(proc.stdout)
    assert evaluated["precision"] == records[0]["precision"]["compute"]
    assert evaluated["top1"] == pytest.approx(records[0]["final"]["top1"])
