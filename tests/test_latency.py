"""Latency and speed-up: structure of the record entry, eval/inference mode, a smaller network is faster."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from harness.job.latency import measure_latency, speedup


def net(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Spy(nn.Module):
    """Records the autograd and train/eval mode of every forward pass."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.calls = []

    def forward(self, x):
        self.calls.append((torch.is_inference_mode_enabled(), self.training, x.shape[0]))
        return self.conv(x)


def test_measure_latency_runs_in_eval_and_inference_mode_and_restores_mode() -> None:
    model = Spy().train()
    out = measure_latency(model, 8, 3, "cpu", batch_sizes=(1, 4), warmup=2, repeats=5)
    assert model.training  # restored
    assert len(model.calls) == 2 * (2 + 5)
    assert all(inference and not training for inference, training, _ in model.calls)
    assert [b for _, _, b in model.calls] == [1] * 7 + [4] * 7
    assert out["batch_1"]["ms"] > 0 and out["batch_4"]["repeats"] == 5
    assert out["repeats"] == 5 and out["warmup"] == 2 and "median of 5" in out["method"]
    assert out["device"].startswith("cpu")


def test_speedup_entry_has_the_record_layout_and_a_smaller_net_is_faster() -> None:
    pruned, reference = net(8), net(96)  # ~140x fewer MACs in the second conv
    entry = speedup(pruned, reference, 16, 3, "cpu", warmup=1, repeats=5)
    json.dumps(entry)  # goes into record.json as is
    assert set(entry) >= {"device", "batch_1", "batch_64", "repeats", "method"}
    for b in ("batch_1", "batch_64"):
        e = entry[b]
        assert set(e) >= {"pruned_ms", "baseline_ms", "speedup"}
        assert e["speedup"] == pytest.approx(e["baseline_ms"] / e["pruned_ms"])
    assert entry["batch_64"]["speedup"] > 1.5
    assert entry["method"].startswith("median of 5 timed forward passes after 1 warm-up")


def test_time_budget_caps_the_repeats_of_a_slow_pass() -> None:
    entry = speedup(net(4), net(64), 32, 3, "cpu", batch_sizes=(64,), warmup=1, repeats=50, budget_s=1e-6)
    assert entry["batch_64"]["repeats"] == 3  # MIN_REPEATS
    assert entry["repeats"] == 50


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_speedup_on_cuda() -> None:
    entry = speedup(net(8), net(256), 32, 3, "cuda", warmup=3, repeats=10)
    assert entry["device"].startswith("cuda") and entry["batch_64"]["speedup"] > 1
