"""The pruner lifecycle in the one schedule: which hooks run when, that a pruner pays nothing
for the hooks it does not override, and that a run interrupted in the middle of soft pruning,
iterative pruning or sparsity training resumes to the same record as an uninterrupted one."""
from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from harness.data import DataConfig
from harness.job.run import JobConfig, prepare, run_job
from harness.prune.plugins import load_builtin_pruners
from harness.prune.pruner import PRUNERS, Pruner, PruneSchedule
from harness.train.engine import OptimConfig
from tests.test_resume import Interrupt, _comparable

load_builtin_pruners()


def _config(out, pruner: str, pruner_config, epochs: int = 3) -> JobConfig:
    return JobConfig(model="resnet20", data=DataConfig("digits", train_subset=200, test_subset=80),
                     optim=OptimConfig(lr=0.05, batch_size=50, milestones=(2,)), epochs=epochs, seed=1, device="cpu",
                     out=None if out is None else str(out), progress=False, pruner=pruner, pruner_config=pruner_config)


# ------------------------------------------------------------------------- the hooks a pruner gets
@pytest.mark.parametrize(("name", "config", "hooks"), [
    ("l1_uniform", {}, None),
    ("laasp", {}, None),
    ("sfp", {}, ("after_epoch",)),
    ("fpgm", {}, ("after_backward", "after_epoch")),
    ("slimming", {}, ("after_backward",)),
    ("depgraph", {}, ("after_backward", "weight_decay")),
    ("taylor", {"frequency": 1, "prune_iterations": 2}, ("after_backward",)),  # iterations that fit the run
])
def test_only_overridden_hooks_reach_the_training_loop(tmp_path, name: str, config: dict, hooks) -> None:
    cfg = PRUNERS.get(name).Config(target_flops=0.2, prune_epoch=1, **config)
    ctx = prepare(_config(None, name, cfg))
    ctx.attach_pruner(PRUNERS.get(name)(cfg))
    got = ctx._pruner_hooks()
    if hooks is None:
        assert got is None  # nothing at all is called per step or per epoch
    else:
        present = tuple(k for k in ("after_backward", "after_epoch", "weight_decay") if getattr(got, k) is not None)
        assert present == hooks


CALLS: list[str] = []


@dataclass(frozen=True)
class RecorderConfig(PruneSchedule):
    pass


class Recorder(Pruner):
    """Records the lifecycle's calls; prunes nothing."""

    Config = RecorderConfig

    def on_train_start(self, ctx) -> None:
        CALLS.append(f"start:{ctx.stage}")

    def after_backward(self, ctx) -> None:
        if not CALLS[-1].startswith("backward"):
            CALLS.append(f"backward:{ctx.stage}")

    def on_epoch_end(self, ctx) -> None:
        CALLS.append(f"epoch:{ctx.stage}:{ctx.state.epochs_trained}")

    def prune(self, ctx) -> dict:
        CALLS.append("prune")
        return {"target_flops": self.config.target_flops, "target_reached": False, "trace": [],
                "removed_per_criterion": {}, "layer_rates": {}}

    def on_train_end(self, ctx) -> dict:
        CALLS.append("end")
        return {"finished": True}


def test_hooks_run_in_lifecycle_order(tmp_path) -> None:
    PRUNERS.register("test_recorder")(Recorder)
    try:
        CALLS.clear()
        record = run_job(_config(tmp_path / "r", "test_recorder", RecorderConfig(target_flops=0.1, prune_epoch=1)))
    finally:
        PRUNERS.unregister("test_recorder")
    assert CALLS == ["start:train", "backward:train", "epoch:train:1", "prune", "backward:finetune",
                     "epoch:finetune:2", "backward:finetune", "epoch:finetune:3", "end"]
    assert record["finished"] is True and record["method"] == {"source": None}


# ------------------------------------------------------------------------- resume stays exact
RESUMES = {
    # soft masks: stopped after the first fine-tuning epoch (masks recomputed at each epoch end)
    "sfp-soft-masks": ("sfp", dict(target_flops=0.3, prune_epoch=1), lambda e: e["phase"] == "finetune"),
    # iterative pruning during training: stopped between two pruning iterations (4 minibatches an epoch)
    "taylor-iterations": ("taylor", dict(target_flops=0.3, prune_epoch=1, frequency=3, prune_iterations=2),
                          lambda e: e["phase"] == "finetune"),
    # sparsity training before the prune point: stopped after its first epoch
    "slimming-regularized": ("slimming", dict(target_flops=0.3, prune_epoch=2, reg=1e-3),
                             lambda e: e["phase"] == "train"),
    "depgraph-regularized": ("depgraph", dict(target_flops=0.3, prune_epoch=2, iterative_steps=40),
                             lambda e: e["phase"] == "train"),
}


@pytest.mark.parametrize("case", RESUMES)
def test_resume_mid_run_gives_the_uninterrupted_record(tmp_path, case: str) -> None:
    name, config, stop = RESUMES[case]
    cfg = _config(tmp_path / "full", name, PRUNERS.get(name).Config(**config))
    full = run_job(cfg, state_path=tmp_path / "full" / "state.pt")

    def report(entry, state_path):
        if stop(entry):
            raise Interrupt

    cut = replace(cfg, out=str(tmp_path / "cut"))
    with pytest.raises(Interrupt):
        run_job(cut, report=report, state_path=tmp_path / "cut" / "state.pt")
    assert (tmp_path / "cut" / "state.pt").exists()
    resumed = run_job(cut, state_path=tmp_path / "cut" / "state.pt")
    assert _comparable(resumed) == _comparable(full)
    for key in ("target_reached", "removed_per_criterion", "method"):
        assert resumed[key] == full[key], key
    assert full["target_reached"] and 0.3 <= full["flops"]["reduction"] <= 0.305
    assert full["method"]["paper"] and full["method"]["official_code"]
