"""Shared fixtures: the real CIFAR-10 copy that sits beside the project (never inside it)."""
from __future__ import annotations

from pathlib import Path

import pytest

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
