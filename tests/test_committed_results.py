"""The tables committed under results/ are exactly what their records produce today.

A change to the table code that alters them must regenerate them (the commands are in each
folder's README), so a committed table never disagrees with its records.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.results.against import against_table_for_folder
from harness.results.tables import table_for_folder
from harness.results.time_split import time_table_for_folder

RESULTS = Path(__file__).resolve().parent.parent / "results"
GENERATED = {  # file name -> how it is made from the folder
    "table.md": lambda folder: table_for_folder(folder, "md"),
    "table.csv": lambda folder: table_for_folder(folder, "csv"),
    "time_split.md": lambda folder: time_table_for_folder(folder, "md"),
    "time_split.csv": lambda folder: time_table_for_folder(folder, "csv"),
    "table_best.md": lambda folder: table_for_folder(folder, "md", metric="best"),
    "against_laasp.md": lambda folder: against_table_for_folder(folder, "md"),
    "against_laasp.csv": lambda folder: against_table_for_folder(folder, "csv"),
}
COMMITTED = sorted((folder, name) for folder in RESULTS.iterdir() if folder.is_dir()
                   for name in GENERATED if (folder / name).is_file())


def test_results_hold_committed_tables() -> None:
    assert any(folder.name == "cifar10_cpu_small" for folder, _ in COMMITTED)


@pytest.mark.parametrize("folder,name", COMMITTED, ids=[f"{f.name}/{n}" for f, n in COMMITTED])
def test_committed_table_matches_its_records(folder: Path, name: str) -> None:
    assert (folder / name).read_text(encoding="utf-8") == GENERATED[name](folder), \
        f"{folder / name} is stale: regenerate it with the commands in {folder / 'README.md'}"
