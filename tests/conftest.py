"""Shared fixtures: the real CIFAR-10 copy that sits beside the project (never inside it); the
CPU suite hides GPUs (see `pytest_configure`)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from harness.data import REPO_ROOT, extract_zip

CIFAR10_ZIP = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"


@pytest.fixture(scope="session")
def cifar10_zip() -> Path:
    """The CIFAR-10 JPEG zip, or a skip that says where it was looked for."""
    if not CIFAR10_ZIP.is_file():
        pytest.skip(
            f"real CIFAR-10 not found at ../shared/data/cifar10-jpeg.zip ({CIFAR10_ZIP}); "
            "copy cifar10-jpeg.zip there to run the real-data tests"
        )
    return CIFAR10_ZIP


@pytest.fixture(scope="session")
def cifar10_root(cifar10_zip: Path) -> Path:
    """The ``cifar10`` folder (train/<class>/, test/<class>/) extracted once into <repo>/.cache/.

    A copy unpacked by hand with ``python -m zipfile -e ... .cache/`` is reused as is;
    otherwise the harness's own extraction (tmp dir + rename) runs once and is reused.
    """
    manual = REPO_ROOT / ".cache" / "cifar10"
    if (manual / "train").is_dir() and (manual / "test").is_dir():
        return manual
    return extract_zip(cifar10_zip, REPO_ROOT / ".cache") / "cifar10"


def pytest_configure(config) -> None:
    """The default suite checks CPU numbers (`--device auto` runs compared with CPU results,
    Ray trials next to serial ones), so on a GPU machine it hides the GPUs from itself and from
    the processes it starts; the GPU tests run in their own pass, ``pytest -m cuda`` (make test
    and benchmarks/gpu_check.sh run it when CUDA is there). Set before torch initialises CUDA."""
    if "cuda" not in (config.getoption("markexpr", "") or ""):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # `make test` runs one worker per core (pytest-xdist): a worker's torch threads, and those
        # of the runs it starts, would otherwise contend for the other workers' cores
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        # Ray starts its workers at niceness 15, where they starve beside other work: with the other
        # worker's tests and a benchmark running, a 26 s two-process trial timed out at 300 s.
        # The README gives users the same setting.
        os.environ.setdefault("RAY_worker_niceness", "0")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny CPU tensors gain nothing from threads; with other jobs on the 2 cores they spin-wait.
    A module asks for it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
