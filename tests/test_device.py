"""Device and precision decisions that must be right before a GPU is ever used, checked without one:
the device string, the bf16 decision by compute capability, the backend switches a precision
sets, the options that choose it, and the RNG state a run saves."""
from __future__ import annotations

import pytest
import torch

from harness.errors import UserError
from harness.job.options import PRECISIONS as OPTION_PRECISIONS
from harness.job.options import job_config_from_options
from harness.train import device as dev
from harness.train.device import PRECISIONS, Precision, bf16_native, exact_fp32, resolve_precision, select_device
from harness.train.memory import available_bytes, cap_process_share
from harness.train.repro import capture_rng, restore_rng

CUDA = torch.device("cuda")


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device as the decisions see it: available, one device, compute capability as set."""
    capability = {"value": (8, 0)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability["value"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(torch.version, "hip", None)
    return capability


@pytest.fixture
def backend_flags():
    """Put the process-wide backend switches back after a test that sets them."""
    saved = (dev.tf32_state(), torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled())
    yield
    tf32, benchmark, deterministic, algorithms = saved
    dev.set_tf32_state(tf32)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, deterministic
    torch.use_deterministic_algorithms(algorithms)


def test_option_table_lists_the_engine_precisions() -> None:
    assert OPTION_PRECISIONS == PRECISIONS


def test_device_string_is_checked_before_anything_runs(fake_gpu) -> None:
    assert select_device("cuda:0") == torch.device("cuda:0")
    assert select_device("cuda") == CUDA and select_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match=r"--device cuda:7: this machine has 1 CUDA device \(cuda:0 to cuda:0\)"):
        select_device("cuda:7")
    with pytest.raises(UserError, match="unknown --device 'gpu'"):
        select_device("gpu")
    with pytest.raises(UserError, match="runs on cpu or cuda devices"):
        select_device("meta")


def test_cuda_asked_for_without_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="CUDA is not available here"):
        select_device("cuda:0")


@pytest.mark.parametrize("capability,auto", [((6, 1), "fp16"), ((7, 0), "fp16"), ((7, 5), "fp16"),
                                             ((8, 0), "bf16"), ((8, 9), "bf16"), ((9, 0), "bf16")])
def test_bf16_only_where_the_gpu_has_it_natively(fake_gpu, capability, auto) -> None:
    fake_gpu["value"] = capability
    assert bf16_native(capability) == (auto == "bf16")
    precision = Precision(CUDA)
    assert precision.name == auto and precision.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[auto]
    assert precision.grad_scaler().is_enabled() == (auto == "fp16")  # fp16 needs the scaler, bf16 does not
    if auto == "fp16":
        with pytest.raises(UserError, match=rf"compute capability {capability[0]}\.{capability[1]}\) has no native bf16"):
            resolve_precision("bf16", CUDA)
    assert resolve_precision("fp16", CUDA) == "fp16" and resolve_precision("fp32", CUDA) == "fp32"


def test_cpu_is_fp32_and_refuses_mixed_precision() -> None:
    cpu = torch.device("cpu")
    assert Precision(cpu).name == "fp32" and Precision(cpu).dtype is None
    assert Precision(cpu, amp=False).describe() == {"compute": "fp32", "requested": "fp32", "grad_scaler": False,
                                                    "tf32": False, "deterministic": False}
    for mode in ("bf16", "fp16"):
        with pytest.raises(UserError, match=f"--precision {mode} needs a CUDA device"):
            Precision(cpu, mode=mode)
    with pytest.raises(UserError, match="--precision must be one of"):
        Precision(cpu, mode="fp8")


def test_amp_false_is_fp32_whatever_the_mode(fake_gpu) -> None:
    assert Precision(CUDA, amp=False, mode="bf16").name == "fp32"


def test_fp32_on_cuda_turns_tf32_off_and_mixed_leaves_it_on(fake_gpu, backend_flags) -> None:
    Precision(CUDA, mode="fp32").configure()
    assert dev.tf32_state()[1:] in (("ieee", "ieee"), (False, False))
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    Precision(CUDA, mode="bf16").configure()
    assert dev.tf32_state()[1:] in (("tf32", "ieee"), (True, False))  # PyTorch's defaults: convs TF32, matmul fp32
    with exact_fp32(CUDA):  # LAASP's candidate losses: true fp32 and no autotuning, whatever the run uses
        assert dev.tf32_state()[1:] in (("ieee", "ieee"), (False, False)) and not torch.backends.cudnn.benchmark
    assert dev.tf32_state()[1:] in (("tf32", "ieee"), (True, False)) and torch.backends.cudnn.benchmark


def test_deterministic_mode_sets_the_switches(fake_gpu, backend_flags, monkeypatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    Precision(CUDA, mode="fp32", deterministic=True).configure()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == dev.CUBLAS_DETERMINISTIC
    Precision(CUDA, mode="fp32").configure()  # the next run of a reused worker is not deterministic by accident
    assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark


def test_cpu_runs_touch_no_backend_switch(backend_flags) -> None:
    before = (dev.tf32_state(), torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    Precision(torch.device("cpu")).configure()
    with exact_fp32(torch.device("cpu")):
        pass
    assert (dev.tf32_state(), torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == before


@pytest.mark.parametrize("options,want", [
    ({}, "auto"), ({"precision": "fp32"}, "fp32"), ({"precision": "bf16"}, "bf16"), ({"no_amp": True}, "fp32"),
    ({"no_amp": True, "precision": "fp32"}, "fp32"),
])
def test_precision_option_and_the_no_amp_alias(options, want) -> None:
    cfg = job_config_from_options({"model": "resnet20", **options})
    assert cfg.precision == want and "precision" in cfg.identity() and cfg.identity()["deterministic"] is False


def test_no_amp_contradicting_precision_is_an_error() -> None:
    with pytest.raises(UserError, match="--no-amp means --precision fp32"):
        job_config_from_options({"model": "resnet20", "no_amp": True, "precision": "fp16"})


def test_rng_state_round_trip_on_cpu() -> None:
    torch.manual_seed(5)
    saved = capture_rng(torch.device("cpu"))
    assert set(saved) == {"rng"}
    first = torch.rand(4)
    torch.manual_seed(99)
    restore_rng(saved, torch.device("cpu"))
    assert torch.equal(torch.rand(4), first)


def test_cuda_rng_is_saved_and_restored_when_the_run_is_on_cuda(monkeypatch) -> None:
    calls = []
    state = torch.tensor([1, 2, 3], dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": calls.append((s, device)))
    saved = capture_rng(CUDA)
    assert torch.equal(saved["cuda_rng"], state) and "rng" in saved
    restore_rng(saved, CUDA)
    assert calls == [(state, CUDA)]
    restore_rng(saved, torch.device("cpu"))  # a GPU state resumed on a CPU: the CUDA part is skipped
    assert len(calls) == 1


def test_memory_helpers_do_nothing_on_cpu() -> None:
    assert available_bytes(torch.device("cpu")) is None
    assert cap_process_share(1.0) is False and cap_process_share(0.0) is False


def test_paper_space_trains_in_fp32_like_the_authors(tmp_path) -> None:
    from harness.sweep.plan import job_config, plan_grid
    from harness.sweep.space import load_space
    from tests.helpers import REPO

    trials = plan_grid(load_space(REPO / "search_spaces" / "paper_cifar10.yaml", overrides={"data_root": str(tmp_path)}))
    assert {t.options["precision"] for t in trials} == {"fp32"}
    assert job_config(dict(trials[0].options), str(tmp_path / "o")).precision == "fp32"
