"""The approximate-selection frontiers pooled by how many images a race's first round saw.

    python benchmarks/frontier_by_first_round.py results/approx_frontier

Reads every ``frontier.json`` that ``bench_approx_frontier.py`` wrote under the folder and, for
the races without the confidence bound, counts per (first-round images, model, subset, eta) how
many measured steps picked the exact winner, and the worst loss regret. Writes
``by_first_round.md`` in the folder (and prints it): the table behind LAASP's default race
(``laasp.racing.DEFAULT_START_IMAGES``).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from laasp.racing import RaceSettings  # noqa: E402


def pooled(folder: Path) -> dict[tuple, dict]:
    cells: dict[tuple, dict] = defaultdict(lambda: {"agree": 0, "steps": 0, "regrets": []})
    for path in sorted(folder.rglob("frontier.json")):
        frontier = json.loads(path.read_text())
        model = frontier["how"].split()[0]
        for size in frontier["sizes"]:
            for step in size["steps"]:
                for race in step["races"]:
                    settings = RaceSettings(**race["settings"])
                    if settings.confidence is not None:
                        continue
                    first = settings.first_round(size["subset"])
                    cell = cells[(first, model, size["subset"], settings.eta)]
                    cell["agree"] += race["agrees"]
                    cell["steps"] += 1
                    cell["regrets"].append(race["regret"])
    return cells


def table(cells: dict[tuple, dict]) -> str:
    lines = ["| first round (images) | model | subset | eta | agreement | max regret (%) |",
             "|---:|---|---:|---:|---:|---:|"]
    for (first, model, subset, eta), c in sorted(cells.items()):
        lines.append(f"| {first} | {model} | {subset} | {eta} | {c['agree']}/{c['steps']} | "
                     f"{100 * max(c['regrets']):.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="a folder holding bench_approx_frontier.py outputs")
    args = p.parse_args()
    cells = pooled(args.folder)
    text = ("# Races without the confidence bound, pooled by their first round's image count\n\n"
            f"Written by `python benchmarks/frontier_by_first_round.py {args.folder.as_posix()}` from every "
            "`frontier.json` below it; agreement counts the measured steps whose race picked the exact "
            "winner.\n\n" + table(cells) + "\n")
    (args.folder / "by_first_round.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
