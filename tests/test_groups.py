"""Record groups (`harness.results.load.group_of`): a pruner's variants are their own rows."""
from __future__ import annotations

import json

from harness.results.load import REGISTERED_KEY, group_of, load_records, target_of
from harness.results.tables import build_table


def _record(pruner, seed=0, top1=50.0, **pruner_config):
    pcfg = {"target_flops": 0.5, **pruner_config} if pruner else None
    return {"model": "resnet20", "dataset": "digits", "pruner": pruner, "method": {},
            "config": {"seed": seed, "pruner_config": pcfg}, "final": {"top1": top1, "top5": 90.0},
            "flops": {"reduction": 0.5 if pruner else 0.0}, "epochs_trained": 10}


def test_group_names_the_variant():
    assert group_of(_record(None)) is None
    assert group_of(_record("laasp", criteria=["l1", "l2", "eucl", "cos"])) == "laasp"
    assert group_of(_record("laasp", criteria=["l1"])) == "laasp[l1]"
    assert group_of(_record("laasp", criteria=["eucl", "l1"])) == "laasp[eucl,l1]"
    assert group_of(_record("l1_uniform")) == "l1_uniform"
    assert group_of(_record("l1_uniform", schedule="oneshot")) == "l1_uniform"
    assert group_of(_record("l1_uniform", schedule="iterative")) == "l1_uniform@iterative"
    scratch = {**_record(None), "target_flops": 0.5, "scratch": {"budget": "B", "source_pruner": "laasp"}}
    assert group_of(scratch) == "scratch-B[laasp]"
    # failed before its config existed (its LAASP twin failed): the sweep options still name the variant
    failed = {"pruner": "l1_uniform", "status": "failed", "config": None, "target_flops": 0.5,
              "options": {"pruner": "l1_uniform", "schedule": "iterative", "target_flops": 0.5}}
    assert group_of(failed) == "l1_uniform@iterative" and target_of(failed) == 0.5


def test_a_published_setting_overridden_is_in_the_name():
    """SFP and FPGM mask from epoch 0 as their papers train (their Config's OWN_DEFAULTS): a run
    started later is another method, and its row says so; pruners without such settings do not."""
    assert group_of(_record("sfp", prune_epoch=0)) == "sfp"
    assert group_of(_record("sfp")) == "sfp"
    assert group_of(_record("sfp", prune_epoch=3)) == "sfp(prune_epoch=3)"
    assert group_of(_record("fpgm", prune_epoch=3, schedule=None)) == "fpgm(prune_epoch=3)"
    assert group_of(_record("l1_uniform", prune_epoch=3)) == "l1_uniform"
    assert group_of(_record("laasp", prune_epoch=3, criteria=["l1"])) == "laasp[l1]"


def test_variants_are_separate_rows_and_scratch_is_not_the_baseline(tmp_path):
    records = [_record(None), _record("laasp", criteria=["l1", "l2", "eucl", "cos"]), _record("laasp", criteria=["l1"]),
               _record("l1_uniform"), _record("l1_uniform", schedule="iterative"),
               {**_record(None, top1=40.0), "target_flops": 0.5,
                "scratch": {"budget": "E", "source_pruner": "laasp"}}]
    (tmp_path / "records").mkdir()
    for i, rec in enumerate(records):
        (tmp_path / "records" / f"{i}.json").write_text(json.dumps(rec))
    loaded = load_records(tmp_path)
    assert [r[REGISTERED_KEY] for r in loaded] == [None, "laasp", "laasp", "l1_uniform", "l1_uniform", None]
    assert target_of(loaded[-1]) == 0.5
    rows = {r.pruner: r for r in build_table(loaded).rows}
    assert set(rows) == {None, "laasp", "laasp[l1]", "l1_uniform", "l1_uniform@iterative", "scratch-E[laasp]"}
    assert rows[None].top1.mean == 50.0  # the scratch run (40.0) is not averaged into the unpruned baseline
    assert rows["scratch-E[laasp]"].baseline.mean == 50.0
