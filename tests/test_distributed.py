"""Data-parallel runs (``--workers N``) on CPU with gloo: the data shards, synchronized batch norm
and DDP against one process, LAASP's candidates split across ranks, whole runs (same first pick
as one worker, interrupted and resumed), a sweep trial through Ray, a dead rank, bad input.

Each spawned rank imports the harness (seconds on a loaded 2-core machine), so every test spawns
as few as it can: one extra process for most."""
from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from harness.data import DataConfig, load_dataset
from harness.errors import UserError
from harness.job.launch import run_data_parallel
from harness.job.run import JobConfig, run_job
from harness.models import build_model
from harness.train.distributed import SINGLE, DataParallel, World
from harness.train.engine import OptimConfig
from laasp.config import LAASPConfig
from laasp.pruner import LAASP
from laasp.racing import RaceSettings, race
from tests.helpers import REPO, error_line


# ----------------------------------------------------------------------------- data shards
def test_ranks_batches_together_are_the_one_process_batch() -> None:
    data = load_dataset(DataConfig("digits", train_subset=251, test_subset=101))  # 251: one padded position
    one = list(data.train_batches(64, epoch_seed=5))
    ranks = [list(data.train_batches(32, 5, rank=r, world=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)  # every rank takes as many steps
    assert [len(b[1]) for b in ranks[0]] == [len(b[1]) for b in ranks[1]]
    for k, (x, y) in enumerate(one[:-1]):  # same images, same crops and flips, split in two
        together = torch.cat([ranks[0][k][0], ranks[1][k][0]])
        key = lambda xs: sorted(xs.flatten(1).sum(1).tolist())  # noqa: E731
        assert key(together) == pytest.approx(key(x))
        assert sorted(torch.cat([ranks[0][k][1], ranks[1][k][1]]).tolist()) == sorted(y.tolist())
    assert sum(len(b[1]) for r in ranks for b in r) == 252  # padded like DistributedSampler
    tests = [torch.cat([y for _, y in data.test_batches(16, rank=r, world=2)]) for r in range(2)]
    assert torch.equal(torch.cat(tests), torch.cat([y for _, y in data.test_batches(16)]))


# ----------------------------------------------------------------------------- two ranks, one spawn
def _trained_like(world: World):
    """ResNet-20 with non-trivial batch norms; the same on every rank (seeded)."""
    torch.manual_seed(0)
    model = build_model("resnet20", 10, 1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.normal_(1, 0.2)
    g = torch.Generator().manual_seed(1)
    return model, torch.randn(48, 1, 8, 8, generator=g), torch.randint(0, 10, (48,), generator=g)


def _selection(world: World) -> dict:
    """LAASP's first step: candidates, exact losses and pick, and a race with a confidence bound."""
    model, x, y = _trained_like(world)
    cfg = LAASPConfig(target_flops=0.3, subset_size=48, chunk_size=16, criteria=("l1", "l2", "cos", "random"))
    pruner = LAASP(model, cfg, x, y, 8, 1, world=world)
    candidates = pruner.candidates()
    winner = pruner.evaluator.exact(candidates)
    raced = race(pruner.evaluator, [type(c)(c.removal, c.sources) for c in candidates],
                 RaceSettings(start_fraction=0.25, eta=2, confidence=0.9))
    return {"losses": [c.loss for c in candidates], "pick": winner.sources[0], "race": raced.sources[0],
            "race_loss": raced.loss, "keys": [c.removal.key(pruner.net.names) for c in candidates]}


def _gradients(world: World) -> dict:
    """One training step of a batch of 16: DDP + synchronized BN on 8 per rank, or 16 in one process."""
    torch.manual_seed(0)
    model = build_model("resnet20", 10, 1).to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    part = slice(world.rank * 8, world.rank * 8 + 8) if world.distributed else slice(None)
    with DataParallel(world, torch.device("cpu")).training(model) as trained:
        trained.train()
        F.cross_entropy(trained(x[part]), y[part]).backward()
    return {"grads": {n: p.grad for n, p in model.named_parameters()},
            "buffers": {n: b.float() for n, b in model.named_buffers()}}


def _rank_work(world: World) -> None:
    _selection(world)
    _gradients(world)


def _main_work(world: World) -> dict:
    return {"split": _selection(world), "alone": _selection(SINGLE), "ddp": _gradients(world),
            "one": _gradients(SINGLE)}


@pytest.fixture(scope="module")
def two_ranks() -> dict:
    return run_data_parallel(2, "cpu", _main_work, _rank_work)


def test_split_candidates_give_the_single_process_losses_and_pick(two_ranks) -> None:
    split, alone = two_ranks["split"], two_ranks["alone"]
    assert split["keys"] == alone["keys"] and len(split["keys"]) > 4
    assert split["losses"] == pytest.approx(alone["losses"], rel=1e-12, abs=0)
    assert split["pick"] == alone["pick"]
    assert (split["race"], split["race_loss"]) == (alone["race"], pytest.approx(alone["race_loss"], rel=1e-12))


def test_ddp_with_synchronized_batch_norm_is_one_process_with_the_whole_batch(two_ranks) -> None:
    ddp, one = two_ranks["ddp"], two_ranks["one"]
    for name, grad in one["grads"].items():
        assert torch.allclose(ddp["grads"][name], grad, rtol=1e-4, atol=1e-6), name
    for name, buf in one["buffers"].items():
        assert torch.allclose(ddp["buffers"][name], buf, rtol=1e-5, atol=1e-6), name


# ----------------------------------------------------------------------------- whole runs
class Interrupt(Exception):
    pass


def _config(out, workers: int, **laasp) -> JobConfig:
    pruning = LAASPConfig(**{"target_flops": 0.12, "prune_epoch": 0, "recover_epoch": 1, "recover_flop": 0.05,
                             "subset_size": 64, "step_scale": 3.0, "criteria": ("l1", "cos"), **laasp})
    return JobConfig(model="resnet20", data=DataConfig("digits", train_subset=256, test_subset=96),
                     optim=OptimConfig(lr=0.05, batch_size=64), epochs=1, seed=4, device="cpu", out=str(out),
                     progress=False, pruner="laasp", pruner_config=pruning, workers=workers)


def test_two_workers_pick_what_one_worker_picks(tmp_path) -> None:
    one = run_job(_config(tmp_path / "one", 1, recover_epoch=0))
    two = run_job(_config(tmp_path / "two", 2, recover_epoch=0))
    # pruning at epoch 0 without recovery: both select on the same initial weights, step after step
    pick = lambda r: [(s["layer"], s["criterion"], s["removed"], s["loss"]) for s in r["trace"]]  # noqa: E731
    assert pick(two) == pick(one) and len(pick(one)) >= 2
    assert two["distributed"] == {"world_size": 2, "backend": "gloo", "per_rank_batch": 32,
                                  "batch_norm": "synchronized"}
    assert one["distributed"]["world_size"] == 1 and one["config"]["workers"] == 1
    assert not multiprocessing.active_children()


def test_two_worker_run_resumes_after_an_interruption(tmp_path) -> None:
    cfg = _config(tmp_path / "run", 2)
    state = tmp_path / "run" / "state.pt"
    seen: list[dict] = []

    def stop_after_first_step(entry, state_path) -> None:
        seen.append(entry)
        if entry.get("phase") == "prune":
            raise Interrupt

    with pytest.raises(Interrupt):
        run_job(cfg, report=stop_after_first_step, state_path=state)
    assert state.exists() and not (tmp_path / "run" / "record.json").exists()
    assert not multiprocessing.active_children()  # the other rank was ended with rank 0
    record = run_job(cfg, state_path=state)
    assert json.loads((tmp_path / "run" / "record.json").read_text())["final"] == record["final"]
    assert record["distributed"]["world_size"] == 2 and record["target_reached"]
    assert [e["phase"] for e in record["history"]] == ["recover", "recover", "finetune"]
    assert record["trace"][0]["step"] == 1 and len(record["trace"]) >= 2 and not state.exists()


def test_a_sweep_trial_runs_as_two_processes_through_ray(tmp_path) -> None:
    space = tmp_path / "ddp.yaml"
    space.write_text("fixed: {model: resnet20, dataset: digits, epochs: 1, train_subset: 128, test_subset: 64, "
                     "batch_size: 32}\npruners:\n  l1_uniform: {prune_epoch: 0}\nseeds: [0]\n"
                     "grid:\n  pruner: [l1_uniform]\n  target_flops: [0.2]\n")
    proc = subprocess.run([sys.executable, str(REPO / "run_bench.py"), "sweep", str(space), "--results-dir",
                           str(tmp_path), "--workers-per-trial", "2"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "ddp" / "records").glob("*.json")]
    assert record["status"] == "ok" and record["executor"] == "ray"
    assert record["distributed"]["world_size"] == 2
    assert json.loads((tmp_path / "ddp" / "sweep.json").read_text())["resources"]["cpus_per_trial"] == 2


# ----------------------------------------------------------------------------- failures and bad input
def _failing_rank(world: World) -> None:
    raise UserError("rank 1 cannot go on")


def _waiting_main(world: World) -> None:
    world.barrier()  # the other rank died: gloo fails this collective


def _stuck_main(world: World) -> None:
    import time

    time.sleep(300)  # stuck outside any collective (as in a hung NCCL wait): only the watchdog ends it


def test_a_dead_rank_stops_rank_0_with_its_error() -> None:
    with pytest.raises(UserError, match="rank 1 cannot go on"):
        run_data_parallel(2, "cpu", _waiting_main, _failing_rank)
    assert not multiprocessing.active_children()


def test_a_rank_0_that_cannot_stop_is_ended_with_the_dead_ranks_error() -> None:
    script = ("import harness.job.launch as L, tests.test_distributed as T; L.GRACE_S = 1; "
              "L.run_data_parallel(2, 'cpu', T._stuck_main, T._failing_rank)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert error_line(proc) == "error: rank 1 cannot go on"


@pytest.mark.parametrize("argv,words", [
    (["train", "--model", "resnet20", "--workers", "0"], "--workers must be >= 1"),
    (["train", "--model", "resnet20", "--batch-size", "30", "--workers", "4"], "does not split evenly"),
    (["train", "--model", "resnet20", "--device", "cpu", "--loader-workers", "-1"], "--loader-workers must be >= 0"),
    (["sweep", "search_spaces/quick.yaml", "--workers-per-trial", "0"], "--workers-per-trial must be >= 1"),
    (["sweep", "search_spaces/quick.yaml", "--workers-per-trial", "2", "--cpus-per-trial", "1"],
     "--cpus-per-trial 2 or more"),
])
def test_bad_worker_counts_are_refused(argv, words, capsys, tmp_path) -> None:
    from harness.cli import main

    if argv[0] == "sweep":
        argv = [*argv, "--results-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err, err


def test_workers_in_a_space_file_points_to_the_sweep_flag(tmp_path, capsys) -> None:
    from harness.cli import main

    space = tmp_path / "s.yaml"
    space.write_text("fixed: {model: resnet20, workers: 2}\nseeds: [0]\ngrid:\n  pruner: [none]\n")
    assert main(["sweep", str(space), "--results-dir", str(tmp_path), "--executor", "serial"]) == 2
    assert "--workers-per-trial" in capsys.readouterr().err


def test_workers_per_trial_that_do_not_split_the_batch_stop_the_plan(tmp_path, capsys) -> None:
    from harness.cli import main

    space = tmp_path / "s.yaml"
    space.write_text("fixed: {model: resnet20, batch_size: 64}\nseeds: [0]\ngrid:\n  pruner: [none]\n")
    assert main(["sweep", str(space), "--results-dir", str(tmp_path), "--executor", "serial",
                 "--workers-per-trial", "3"]) == 2
    assert "does not split evenly across --workers 3" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # refused before any trial, nothing left behind


def test_records_and_states_from_before_the_rename_still_read(tmp_path) -> None:
    from harness.job.start import _upgraded_identity

    old = {"dataset": "digits", "workers": 8, "train_subset": 10}
    assert DataConfig.from_record(old).loader_workers == 8
    cfg = _config(tmp_path, 1)
    saved = cfg.identity()
    saved["data"] = {**saved["data"], "workers": 8}  # a state written before the rename
    assert _upgraded_identity(saved) == cfg.identity() == replace(cfg, workers=2).identity()
    # nor does the DataLoader's worker count decide what a run computes: another count resumes it
    other = replace(cfg, data=replace(cfg.data, loader_workers=0))
    assert _upgraded_identity({**saved, "data": {**saved["data"], "loader_workers": 4}}) == other.identity()


def test_an_exact_laasp_state_saved_under_the_old_race_defaults_still_resumes(tmp_path) -> None:
    from dataclasses import asdict

    from harness.job.records import to_jsonable
    from harness.job.start import _upgraded_identity

    cfg = _config(tmp_path, 1)
    saved = {**cfg.identity(), "pruner_config": to_jsonable(asdict(replace(cfg.pruner_config, approx_start_fraction=0.125,
                                                                           approx_eta=2)))}
    assert _upgraded_identity(saved, cfg.identity()) == cfg.identity()
    # an approximate run's race decides its picks: a state saved with another race is refused
    approx = _config(tmp_path, 1, selection="approx")
    saved = {**approx.identity(), "pruner_config": to_jsonable(asdict(replace(approx.pruner_config, approx_eta=4)))}
    assert _upgraded_identity(saved, approx.identity()) != approx.identity()
