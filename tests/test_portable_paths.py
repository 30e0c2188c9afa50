"""Records, sweep.json and reports hold no absolute machine path: new ones are written relative,
old ones are rewritten by ``migrate-paths``, and the tables still read them; the ASHA rungs
both executors use make Ray Tune's AsyncHyperBandScheduler's decisions."""
from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.job.records import portable_path, resolve_path
from harness.results.tables import table_for_folder
from tests.helpers import REPO, absolute_paths

RESULTS = REPO / "results"
ABSOLUTE = re.compile(r"(?<![\w.])/(?:work|tmp|home|root|Users|scratch|mnt|data)/")


def test_committed_results_hold_no_absolute_paths() -> None:
    files = [p for p in RESULTS.rglob("*") if p.suffix in (".json", ".html", ".md", ".csv")]
    assert any(p.name == "sweep.json" for p in files) and any("reruns" in p.parts for p in files)
    for path in files:
        text = re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+", "", path.read_text(encoding="utf-8"))
        if path.suffix == ".json":
            assert absolute_paths(json.loads(text)) == [], path
        assert not ABSOLUTE.search(text), (path, ABSOLUTE.search(text))


def test_portable_path_round_trip(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    assert portable_path(sweep / "trials" / "t" / "checkpoint.pt", sweep) == "trials/t/checkpoint.pt"
    assert portable_path(sweep, sweep) == "."
    data = REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"
    assert portable_path(data) == "../shared/data/cifar10-jpeg.zip" and resolve_path(portable_path(data)) == data
    assert resolve_path("trials/t", sweep) == sweep / "trials" / "t"
    assert resolve_path("/old/absolute") == Path("/old/absolute")  # older records keep working


def test_migrate_paths_rewrites_old_records_and_tables_still_read_them(tmp_path, capsys) -> None:
    folder = tmp_path / "quick"
    shutil.copytree(RESULTS / "quick", folder, ignore=shutil.ignore_patterns("plots", "*.html"))
    old_repo, old_data = "/old/machine/repo", "/old/machine/shared/data/cifar10-jpeg.zip"
    for path in sorted((folder / "records").glob("*.json")):  # make them look like the first version's
        rec = json.loads(path.read_text())
        trial = f"{old_repo}/results/quick/trials/{path.stem}"
        rec["config"]["out"], rec["checkpoint"] = trial, f"{trial}/checkpoint.pt"
        rec["data"]["root"] = f"{old_repo}/.cache/extracted/cifar10-jpeg-0"
        path.write_text(json.dumps(rec))
    meta = json.loads((folder / "sweep.json").read_text())
    meta.update(space=f"{old_repo}/search_spaces/quick.yaml", space_dir=f"{old_repo}/search_spaces")
    (folder / "sweep.json").write_text(json.dumps(meta))
    run = folder / "reruns" / "one"
    run.mkdir(parents=True)
    rec["config"]["out"], rec["checkpoint"] = "/tmp/elsewhere/one", "/tmp/elsewhere/one/checkpoint.pt"
    rec["config"]["data"]["data_root"] = rec["data"]["data_root"] = rec["options"]["data_root"] = old_data
    (run / "record.json").write_text(json.dumps(rec))

    assert main(["migrate-paths", str(folder)]) == 0
    assert "12 file(s) rewritten" in capsys.readouterr().out
    rec = json.loads((folder / "records" / "001-resnet20-laasp-t0.4-s0.json").read_text())
    assert rec["checkpoint"] == "trials/001-resnet20-laasp-t0.4-s0/checkpoint.pt"
    assert rec["config"]["out"] == "trials/001-resnet20-laasp-t0.4-s0"
    assert rec["data"]["root"] == ".cache/extracted/cifar10-jpeg-0"
    assert json.loads((folder / "sweep.json").read_text())["space"] == "search_spaces/quick.yaml"
    rerun = json.loads((run / "record.json").read_text())
    assert rerun["config"]["out"] == "." and rerun["checkpoint"] == "checkpoint.pt"
    assert rerun["data"]["data_root"] == rerun["options"]["data_root"] == "../shared/data/cifar10-jpeg.zip"
    for path in folder.rglob("*.json"):
        assert absolute_paths(json.loads(path.read_text())) == [], path
    assert table_for_folder(folder, "md") == (RESULTS / "quick" / "table.md").read_text()
    assert main(["migrate-paths", str(folder)]) == 0 and "0 file(s) rewritten" in capsys.readouterr().out


def test_new_run_record_paths_are_relative_and_eval_reads_them(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--model", "resnet20", "--dataset", "digits", "--epochs", "1", "--train-subset", "100",
                 "--test-subset", "50", "--quiet", "--out", str(out)]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["checkpoint"] == "checkpoint.pt" and record["config"]["out"] == "."
    assert absolute_paths(record) == []
    monkeypatch.chdir(tmp_path)  # eval from another folder
    assert main(["eval", str(out / "checkpoint.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["top1"] == pytest.approx(record["final"]["top1"])


def test_rungs_decide_as_rays_async_hyperband() -> None:
    """Same reports, same STOP/CONTINUE as ray.tune's ASHAScheduler, trial after trial."""
    from types import SimpleNamespace

    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from harness.sweep.asha import Rungs

    rng = random.Random(15)
    for mode, rf, grace in (("max", 2, 1), ("min", 3, 2), ("max", 4, 1)):
        ray_asha = ASHAScheduler(time_attr="epoch", metric="m", mode=mode, grace_period=grace, reduction_factor=rf,
                                 max_t=12)
        ours = Rungs(grace, rf, 12, mode, "m")
        for t in range(12):
            trial = SimpleNamespace(trial_id=f"t{t}")
            ray_asha.on_trial_add(None, trial)
            for epoch in range(1, 13):
                result = {"epoch": epoch, "m": rng.uniform(0, 100)}
                theirs = ray_asha.on_trial_result(None, trial, result) == TrialScheduler.STOP
                assert ours.decide(f"t{t}", result) == theirs, (mode, rf, t, epoch)
                if theirs:
                    break
