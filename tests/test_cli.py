"""run_bench.py as a user meets it: train/eval/info, and one clear error line (exit 2) for bad input."""
from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import error_line, one_error, run_cli


def test_train_writes_record_and_eval_reproduces_it(tmp_path) -> None:
    out = tmp_path / "run"
    proc = run_cli("train", "--model", "resnet20", "--dataset", "digits", "--epochs", "2", "--train-subset", "600",
                   "--device", "cpu", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("result: resnet20 digits")
    record = json.loads((out / "record.json").read_text())
    for key in ("model", "dataset", "pruner", "seed", "config", "env", "history", "final", "flops", "params",
                "epochs_trained", "wall_time_s", "flops_counter", "checkpoint"):
        assert key in record, key
    assert record["pruner"] is None and record["epochs_trained"] == 2 and len(record["history"]) == 2
    assert record["flops"]["before"] == record["flops"]["after"] and record["flops"]["reduction"] == 0
    assert set(record["final"]) == {"top1", "top5", "loss"}
    assert record["env"]["torch"] and record["env"]["device"] == "cpu"
    assert record["precision"] == {"compute": "fp32", "requested": "auto", "grad_scaler": False, "tf32": False,
                                   "deterministic": False}
    assert record["data"]["train_size"] == 600
    proc = run_cli("eval", str(out / "checkpoint.pt"), "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    evaluated = json.loads(proc.stdout)
    assert evaluated["top1"] == pytest.approx(record["final"]["top1"])
    assert evaluated["flops"] == record["flops"]["after"]
    assert evaluated["precision"] == "fp32" and evaluated["device"] == "cpu"
    # a run recorded in bf16 (on a GPU) evaluates in its own precision where it can; on a CPU in fp32, saying so
    payload = torch.load(out / "checkpoint.pt", weights_only=True)
    payload["meta"]["record"]["precision"]["compute"] = "bf16"
    torch.save(payload, out / "bf16.pt")
    proc = run_cli("eval", str(out / "bf16.pt"), "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["precision"] == "fp32" and "computed in bf16" in proc.stderr
    assert "--precision bf16 needs a CUDA device" in error_line(
        run_cli("eval", str(out / "bf16.pt"), "--device", "cpu", "--precision", "bf16"))


def test_eval_precision_comes_from_the_record() -> None:
    from harness.cli.jobs import recorded_precision

    assert recorded_precision({"precision": {"compute": "fp16"}, "config": {"precision": "auto"}}) == "fp16"
    assert recorded_precision({"config": {"precision": "bf16"}}) == "bf16"
    assert recorded_precision({"config": {"amp": False}}) == "fp32"  # records from before --precision
    assert recorded_precision({"config": {"amp": True}}) == "auto"


def test_info_json() -> None:
    proc = run_cli("info", "--model", "resnet56", "--dataset", "cifar10", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert abs(info["flops"] - 125.5e6) / 125.5e6 < 0.01 and abs(info["params"] - 0.85e6) / 0.85e6 < 0.01


@pytest.mark.parametrize("args,words", [
    (["train", "--model", "resnet999"], "unknown model 'resnet999'"),
    (["train", "--model", "resnet20", "--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["train", "--model", "resnet20", "--dataset", "cifar10"], "--data-root is required"),
    (["train", "--model", "resnet20", "--dataset", "cifar10", "--data-root", "/no/such/dir"], "does not exist"),
    (["train", "--model", "vgg16", "--dataset", "digits"], "too small for vgg16"),
    (["train", "--model", "resnet20", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "--model", "resnet20", "--lr", "0"], "--lr must be > 0"),
    (["train", "--model", "resnet20", "--lr", "-0.1"], "--lr must be > 0"),
    (["train", "--model", "resnet20", "--train-subset", "0"], "--train-subset must be at least 1"),
    (["eval", "/no/such/checkpoint.pt"], "does not exist"),
    (["train", "--model", "resnet20", "--device", "cuda:99"], "--device cuda:99"),
    (["train", "--model", "resnet20", "--device", "tpu"], "--device"),
    (["train", "--model", "resnet20", "--device", "cpu", "--precision", "fp16"], "--precision fp16 needs a CUDA"),
    (["train", "--model", "resnet20", "--no-amp", "--precision", "bf16"], "--no-amp means --precision fp32"),
])
def test_bad_input_one_error_line(args, words, tmp_path, capsys) -> None:
    # in this process (a subprocess per case cost 3-6 s of imports); the tests below run the real process
    assert words in one_error(capsys, [*args, "--out", str(tmp_path / "o")] if args[0] == "train" else args)
    assert not (tmp_path / "o").exists()  # nothing written, nothing trained


def test_wrong_layout_says_what_was_expected(tmp_path) -> None:
    (tmp_path / "junk").mkdir()
    proc = run_cli("train", "--model", "resnet20", "--dataset", "cifar10", "--data-root", str(tmp_path / "junk"))
    line = error_line(proc)
    assert "cifar-10-batches-py" in line and "train/<class>" in line
