"""--compile: the training step is compiled only where shapes are final, shares the model's
parameters (optimizer, checkpoints and results equal eager's) and falls back to eager when
torch.compile is unavailable. torch.compile itself is replaced by a recording wrapper here: a
real compile takes minutes on this CPU (benchmarks/bench_compile.py measures it)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from baselines.common import BaselineConfig
from harness.data import DataConfig
from harness.job.config import JobConfig
from harness.job.run import run_job
from harness.train.compiled import CompiledTraining
from harness.train.engine import OptimConfig
from tests.helpers import run_cli


class Wrapper(nn.Module):
    """What the fake torch.compile returns: the same module behind a new object, counting calls."""

    def __init__(self, module: nn.Module, log: list):
        super().__init__()
        self.inner, self.log = module, log

    def forward(self, x):
        self.log.append(x.shape[0])
        return self.inner(x)


@pytest.fixture
def fake_compile(monkeypatch):
    calls: dict[str, list] = {"compiled": [], "forwards": []}

    def compile(model, **kw):
        calls["compiled"].append(model)
        return Wrapper(model, calls["forwards"])

    monkeypatch.setattr(torch, "compile", compile)
    return calls


def _config(out, compile: bool, pruner: str | None = "l1_uniform") -> JobConfig:
    pcfg = BaselineConfig(target_flops=0.3, prune_epoch=1) if pruner else None
    return JobConfig(model="resnet20", data=DataConfig("digits", train_subset=128, test_subset=64),
                     optim=OptimConfig(lr=0.05, batch_size=64, milestones=(2,)), epochs=3, seed=1, device="cpu",
                     out=str(out), progress=False, pruner=pruner, pruner_config=pcfg, compile=compile)


def _comparable(record: dict) -> dict:
    return {"history": [{k: v for k, v in e.items() if k not in ("train_time_s", "images_per_s")}
                        for e in record["history"]], "final": record["final"], "flops": record["flops"]}


def test_pruned_run_compiles_after_pruning_only_and_matches_eager(tmp_path, fake_compile):
    eager = run_job(_config(tmp_path / "eager", compile=False), state_path=None)
    assert fake_compile["compiled"] == [] and eager["compile"] == {"requested": False, "compiled_models": 0,
                                                                   "fallback": None}
    compiled = run_job(_config(tmp_path / "compiled", compile=True), state_path=None)
    # one compile, of the pruned network, used for the two fine-tuning epochs (2 batches each), not the first epoch
    assert len(fake_compile["compiled"]) == 1 and fake_compile["forwards"] == [64, 64] * 2
    assert compiled["compile"] == {"requested": True, "compiled_models": 1, "fallback": None}
    assert compiled["config"]["compile"] is True
    assert _comparable(compiled) == _comparable(eager)  # the same parameters are trained


def test_unpruned_run_compiles_from_the_start(tmp_path, fake_compile):
    record = run_job(_config(tmp_path, compile=True, pruner=None), state_path=None)
    assert fake_compile["forwards"] == [64, 64] * 3 and record["compile"]["compiled_models"] == 1


def test_unavailable_compile_falls_back_to_eager(tmp_path, monkeypatch):
    def broken(model, **kw):
        raise RuntimeError("torch.compile is not supported on this Python")

    monkeypatch.setattr(torch, "compile", broken)
    record = run_job(_config(tmp_path, compile=True), state_path=None)
    assert record["compile"]["compiled_models"] == 0 and "not supported" in record["compile"]["fallback"]
    assert len(record["history"]) == 3


def test_compiled_module_is_cached_per_model():
    c = CompiledTraining(True)
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    first = c.module(a)
    assert c.module(a) is first and c.module(b) is not first and c.compiled_models == 2
    assert CompiledTraining(False).module(a) is a


def test_flag_and_yaml_option_reach_the_config():
    from harness.cli.main import build_parser
    from harness.job.options import job_config_from_options

    args = vars(build_parser().parse_args(["train", "--model", "resnet20", "--dataset", "digits", "--compile"]))
    assert args["compile"] is True
    base = {"model": "resnet20", "dataset": "digits", "quiet": True, "device": "cpu"}
    assert job_config_from_options({**base, "compile": True}).compile is True
    assert job_config_from_options(base).compile is False
