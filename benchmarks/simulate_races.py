"""Replay LAASP's race on saved per-image candidate losses, in many image orders.

    python benchmarks/simulate_races.py .cache/frontier_losses/resnet20_subset10000 --orders 200 \
        --subsets 2000,5000,10000 --start-images 312,625,1250 --etas 3,4 --confidences none,0.99

`bench_approx_frontier.py --save-losses DIR` keeps, at every step of an exact LAASP run, each
candidate's loss on each image of the subset. A race only ever reads those numbers, so it can be
replayed here with the production code (`laasp.racing.race`, on an evaluator that reads the
matrix) for any setting and any order of the images, at no forward cost:

- **Order 0 is the subset as drawn**: on the full subset it is the race the benchmark ran, pick
  for pick (a test checks this). Orders 1.. are uniform random permutations (seeded): other,
  equally likely orders of the same images, so each step gives an agreement *rate*, not one
  yes/no.
  ``--check`` replays, as drawn, every race a benchmark run measured on a saved network state
  (same subset size, step and exact winner's loss) and counts those that reproduce its pick
  and regret.
- **A smaller subset** (``--subsets``) is the first m images of each order: a uniform random
  m-image part of the saved subset, whose exact winner is recomputed on those m images.
- **Work** counts what the evaluator computes: per candidate and image, the conv/linear MACs of
  the stages it re-runs, plus the clean prefix each round computes once per image (up to the
  deepest first stage in the round). Exact selection's work on the same images over the race's is
  the predicted speed-up over exact selection; ``--authors`` (a benchmark run per folder that
  timed the authors' loop) turns it into one over the authors' loop, with the ratio of authors'
  to exact time measured in that run.
  Evaluation is conv-bound (about 90% of a CPU forward is convolution), so MACs stand for time;
  ``--measured`` (the benchmark runs that saved the losses) checks that: the column ``measured``
  is exact selection's time over the race's, where the benchmark timed the same race.

Writes ``simulated.md``, ``simulated.json`` and ``simulated.png`` (agreement against speed-up,
one panel per subset size) to ``--out``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frontier_records import losses_file_key, recorded_race  # noqa: E402
from harness.errors import UserError  # noqa: E402
from laasp.racing import DEFAULT_START_IMAGES, RaceSettings, race  # noqa: E402
from laasp.selection import Candidate  # noqa: E402


class MatrixEvaluator:
    """The part of `CandidateEvaluator` a race uses, reading losses instead of computing them.

    ``Candidate.removal`` holds the candidate's row of ``matrix`` (candidates x images)."""

    def __init__(self, matrix: torch.Tensor, suffix_macs: torch.Tensor):
        self.matrix, self.suffix_macs = matrix, [int(m) for m in suffix_macs]
        self.x = matrix[0]  # a race reads len(evaluator.x): the subset size
        self.total_macs = max(self.suffix_macs)  # a stem candidate re-runs the whole network
        self.keep_per_image = False
        self.work = 0

    def losses(self, candidates: list[Candidate], n_images: int | None = None, start_image: int = 0) -> None:
        n_images = len(self.x) if n_images is None else min(n_images, len(self.x))
        rows = n_images - start_image
        self.work += rows * (self.total_macs - min(self.suffix_macs[c.removal] for c in candidates))
        for c in candidates:
            segment = self.matrix[c.removal, start_image:n_images]
            c.loss_sum += float(segment.sum())
            c.images += rows
            self.work += rows * self.suffix_macs[c.removal]
            if self.keep_per_image:
                c.per_image.append(segment)

    def exact_work(self) -> int:
        return len(self.x) * (sum(self.suffix_macs) + self.total_macs - min(self.suffix_macs))


def load_steps(folder: Path) -> list[dict]:
    steps = [dict(torch.load(path, weights_only=True), path=path, name=f"{folder.name}/{path.stem}")
             for path in sorted(folder.glob("*.pt"))]
    for step in steps:  # the exact winner on all saved images, which every replay compares with
        step["full_winner"] = int(torch.argmin(step["losses"].mean(1)))
    return steps


# What a race can read: the fp32 losses exact selection uses, or the same candidates scored with
# bfloat16 forwards (bench_approx_frontier.py --bf16-losses), timed beside the fp32 pass.
RACE_LOSSES = {"fp32": "losses", "bf16": "losses_bf16"}


def replay(step: dict, grid: list[RaceSettings], subset: int, order: torch.Tensor,
           race_losses: str = "fp32") -> list[dict]:
    """Each race of ``grid`` on the first ``subset`` images of ``order``: agreement, regret, work ratio.

    Agreement and regret are always against fp32 exact selection; a bf16 race's work ratio is its
    work count's times the step's measured fp32/bf16 time ratio."""
    matrix = step["losses"][:, order[:subset]]
    race_matrix = step[RACE_LOSSES[race_losses]][:, order[:subset]]
    speed = 1.0 if race_losses == "fp32" else step["exact_s"] / step["exact_bf16_s"]
    exact_loss = matrix.mean(1)
    winner = int(torch.argmin(exact_loss))  # the first smallest: the authors' order breaks ties
    full_winner = step["full_winner"] if "full_winner" in step else int(torch.argmin(step["losses"].mean(1)))
    runs = []
    for settings in grid:
        evaluator = MatrixEvaluator(race_matrix, step["suffix_macs"])
        pick = race(evaluator, [Candidate(i, []) for i in range(len(matrix))], settings).removal
        runs.append({"agrees": pick == winner, "work_ratio": speed * evaluator.exact_work() / evaluator.work,
                     "exact_is_full": winner == full_winner,
                     "regret": float((exact_loss[pick] - exact_loss[winner]) / exact_loss[winner])})
    return runs


def simulate(steps: list[dict], grid: list[RaceSettings], subset: int, orders: int, seed: int,
             race_losses: str = "fp32") -> list[dict]:
    """One row per race of ``grid``: its replays over every step and ``orders`` image orders."""
    return [_row(settings, subset, orders, steps_of)
            for settings, steps_of in zip(grid, replay_steps(steps, grid, subset, orders, seed, race_losses))]


def replay_steps(steps: list[dict], grid: list[RaceSettings], subset: int, orders: int,
                 seed: int, race_losses: str = "fp32") -> list[list[dict]]:
    """Per race of ``grid``, per step: its replays in ``orders`` image orders (order 0 as drawn)."""
    per_step: list[list[dict]] = [[] for _ in grid]
    for k, step in enumerate(steps):
        n = step["losses"].shape[1]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + k)
        by_order = [replay(step, grid, subset, torch.arange(n) if o == 0 else torch.randperm(n, generator=gen),
                           race_losses) for o in range(orders)]
        for i in range(len(grid)):
            runs = [replays[i] for replays in by_order]
            per_step[i].append({"step": step["name"], "agreement": sum(r["agrees"] for r in runs) / len(runs),
                                "as_drawn_agrees": runs[0]["agrees"], "as_drawn_regret": runs[0]["regret"],
                                "regrets": [r["regret"] for r in runs],
                                "exact_is_full": sum(r["exact_is_full"] for r in runs) / len(runs),
                                "work_ratio": statistics.median(r["work_ratio"] for r in runs)})
    return per_step


def _row(settings: RaceSettings, subset: int, orders: int, per_step: list[dict]) -> dict:
    regrets = [r for s in per_step for r in s["regrets"]]
    return {"settings": settings.__dict__, "subset": subset, "steps": len(per_step),
            "orders": orders, "agreement": statistics.fmean(s["agreement"] for s in per_step),
            "worst_step_agreement": min(s["agreement"] for s in per_step),
            "exact_is_full": statistics.fmean(s["exact_is_full"] for s in per_step),
            "median_regret": statistics.median(regrets), "p99_regret": _quantile(regrets, 0.99),
            "max_regret": max(regrets), "work_ratio": statistics.median(s["work_ratio"] for s in per_step),
            "per_step": [{k: v for k, v in s.items() if k != "regrets"} for s in per_step]}


def check(folders: list[list[dict]], frontier_json: Path) -> tuple[int, int]:
    """(reproduced, compared): the benchmark run's races on saved states, replayed as drawn, each on
    the losses of its own precision (a bf16 race on the saved bf16 pass)."""
    saved: dict[tuple[int, int], list[dict]] = {}  # two runs' folders hold the same names
    for steps in folders:
        for step in steps:
            key = losses_file_key(step["path"])
            if key is not None:
                saved.setdefault(key, []).append(step)
    reproduced = compared = 0
    for size in json.loads(frontier_json.read_text())["sizes"]:
        for number, measured in enumerate(size["steps"], start=1):
            # the same network state: same step number and the same exact winner's loss
            step = next((s for s in saved.get((size["subset"], measured.get("step", number)), [])
                         if s["losses"].shape[1] == size["subset"] and abs(float(s["losses"].mean(1).min())
                         - measured["winner_loss"]) <= 1e-12 * measured["winner_loss"]), None)
            if step is None:
                continue
            for race_run in measured["races"]:
                settings = recorded_race(race_run, size["subset"])
                if RACE_LOSSES[settings.precision] not in step:
                    continue  # a bf16 race on a step saved without --bf16-losses
                replayed = replay(step, [settings], size["subset"], torch.arange(size["subset"]),
                                  settings.precision)[0]
                compared += 1
                reproduced += (race_run["agrees"] == replayed["agrees"]
                               and abs(race_run["regret"] - replayed["regret"]) < 1e-9)
    return reproduced, compared


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def authors_over_exact(frontier_json: Path) -> float:
    """The authors' loop's median time over exact selection's, as measured in one benchmark run."""
    size = json.loads(frontier_json.read_text())["sizes"][0]
    if not size["reference_s"]:
        raise UserError(f"{frontier_json} has no timing of the authors' loop; pass a run made with "
                        "--reference-steps 1 or more")
    return statistics.median(size["reference_s"]) / statistics.median(s["exact_s"] for s in size["steps"])


def measured_ratio(frontier_jsons: list[Path], settings: RaceSettings, subset: int) -> float | None:
    """Exact selection's median time over the race's, on every step where these benchmark runs timed
    this race; None where none did."""
    ratios = [step["exact_s"] / race["s"]
              for frontier_json in frontier_jsons for size in json.loads(frontier_json.read_text())["sizes"]
              if size["subset"] == subset for step in size["steps"] for race in step["races"]
              if (recorded_race(race, subset).first_round(subset), race["settings"]["eta"],
                  race["settings"]["confidence"]) == (settings.first_round(subset), settings.eta,
                                                      settings.confidence)]
    return statistics.median(ratios) if ratios else None


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def markdown(rows: list[dict], how: str) -> str:
    head = ("| subset | race | steps x orders | agreement | worst step | median / p99 / max regret (%) | "
            "work vs exact (x) | measured (x) | vs authors (x) | subset's exact = full's |\n"
            "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r['subset']} | {r['describe']} | {r['steps']} x {r['orders']} | {100 * r['agreement']:.1f}% | "
        f"{100 * r['worst_step_agreement']:.0f}% | {100 * r['median_regret']:.3f} / {100 * r['p99_regret']:.3f} / "
        f"{100 * r['max_regret']:.3f} | {r['work_ratio']:.1f} | {_x(r['measured_ratio'])} | "
        f"{_x(r['vs_authors'])} | {100 * r['exact_is_full']:.0f}% |\n" for r in rows)
    return f"# Races replayed on saved candidate losses\n\n{how}\n\n" + head + body


def plot(rows: list[dict], path: Path) -> None:
    """Agreement against speed-up (over the authors' loop where known, else over exact), per subset."""
    from harness.results.figures import new_figure

    subsets = sorted({r["subset"] for r in rows})
    fig = new_figure(4.0 * len(subsets), 4.0)
    for k, subset in enumerate(subsets):
        ax = fig.add_subplot(1, len(subsets), k + 1)
        for j, folder in enumerate(sorted({r["folder"] for r in rows})):
            pts = [r for r in rows if r["subset"] == subset and r["folder"] == folder]
            authors = all(r["vs_authors"] is not None for r in pts)
            xs = [r["vs_authors"] if authors else r["work_ratio"] for r in pts]
            ax.scatter(xs, [100 * r["agreement"] for r in pts], color=f"C{j}",
                       label=f"{folder} (vs {'authors' if authors else 'exact'})")
            for x, r in zip(xs, pts):  # first round / eta, "b" for a confidence bound
                s = r["settings"]
                label = f"{round(s['start_fraction'] * subset)}/{s['eta']}" + ("b" if s["confidence"] else "")
                ax.annotate(label, (x, 100 * r["agreement"]), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.axhline(95, color="gray", ls="--")
        ax.axvline(20, color="gray", ls=":")
        ax.set_title(f"subset {subset}", fontsize=9)
        ax.set_xlabel("predicted speed-up (x)")
        ax.set_ylabel("picks equal to exact (%)")
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=120, metadata={"Software": None})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("losses", type=Path, nargs="+", help="folders written by bench_approx_frontier.py --save-losses")
    p.add_argument("--subsets", default="", help="subset sizes to replay (default: each folder's full subset)")
    p.add_argument("--start-images", default=f"{DEFAULT_START_IMAGES // 2},{DEFAULT_START_IMAGES},"
                                             f"{2 * DEFAULT_START_IMAGES}", help="first-round sizes in images")
    p.add_argument("--etas", default="3,4")
    p.add_argument("--confidences", default="none")
    p.add_argument("--orders", type=int, default=100, help="image orders per step (the first is the subset as drawn)")
    p.add_argument("--authors", type=Path, nargs="*", default=[], metavar="FRONTIER_JSON",
                   help="per losses folder, in the same order, a bench_approx_frontier.py run of the same network "
                        "and subset size that timed the authors' loop and exact selection")
    p.add_argument("--measured", type=Path, nargs="*", default=[], metavar="FRONTIER_JSON",
                   help="the benchmark run behind each losses folder, in the same order, for the measured column")
    p.add_argument("--check", type=Path, nargs="*", default=[], metavar="FRONTIER_JSON",
                   help="benchmark runs whose measured races, on the saved states, the replay must reproduce")
    p.add_argument("--pool", metavar="NAME", help="also one row per race over all folders' steps together, named "
                   "NAME: for folders that are runs of one network (e.g. two loss subsets, --subset-seed)")
    p.add_argument("--race-losses", choices=sorted(RACE_LOSSES), default="fp32",
                   help="which saved losses the races read (bf16: bench_approx_frontier.py --bf16-losses); "
                        "agreement and regret are against fp32 exact selection either way")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def checked_inputs(args: argparse.Namespace) -> tuple[list[list[dict]], list[float | None]]:
    """Every folder's steps and its authors' ratio, or a UserError before any replay."""
    for flag, runs in (("--measured", args.measured), ("--authors", args.authors)):
        if runs and len(runs) != len(args.losses):
            raise UserError(f"{flag} names {len(runs)} runs for {len(args.losses)} losses folders; give one "
                            "frontier.json per folder, in the same order")
    missing = [f for f in [*args.measured, *args.authors, *args.check] if not f.is_file()]
    if missing:
        raise UserError(f"{missing[0]} is not a file; --measured, --authors and --check take the frontier.json "
                        "that bench_approx_frontier.py wrote")
    folders = []
    for folder in args.losses:
        steps = load_steps(folder)
        if not steps:
            raise UserError(f"no saved steps (*.pt) in {folder}; run bench_approx_frontier.py --save-losses {folder} "
                            "first")
        if any(RACE_LOSSES[args.race_losses] not in step for step in steps):
            raise UserError(f"--race-losses {args.race_losses}: {folder} has steps saved without those losses; run "
                            f"bench_approx_frontier.py --save-losses {folder} --bf16-losses into a new folder")
        full = min(step["losses"].shape[1] for step in steps)
        if any(int(s) > full for s in args.subsets.split(",") if s):
            raise UserError(f"--subsets {args.subsets} asks for more than the {full} images saved in {folder}; pass "
                            f"sizes up to {full}")
        folders.append(steps)
    return folders, [authors_over_exact(f) for f in args.authors] or [None] * len(folders)


def race_settings(subset: int, start_images: str, eta: str, confidence: str) -> RaceSettings:
    return RaceSettings(int(start_images) / subset, int(eta), None if confidence == "none" else float(confidence))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        folders, authors_ratios = checked_inputs(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    checks = {}
    for run in args.check:
        checks[run.as_posix()] = check(folders, run)
        print(f"{run}: {checks[run.as_posix()][0]} of {checks[run.as_posix()][1]} measured races reproduced as drawn")
    rows = []
    combos = list(itertools.product(args.start_images.split(","), args.etas.split(","), args.confidences.split(",")))
    pooled: dict[int, list[list[dict]]] = {}  # per subset size, per race: every folder's steps

    def add_row(settings, subset, per_step, runs, authors, name, start, eta, conf) -> None:
        row = _row(settings, subset, args.orders, per_step)
        row.update(measured_ratio=measured_ratio(runs, settings, subset) if args.race_losses == "fp32" else None,
                   vs_authors=None if authors is None else authors * row["work_ratio"], folder=name,
                   describe=f"{name}: first round {start}, eta {eta}, "
                            + ("no bound" if conf == "none" else f"bound {conf}"))
        rows.append(row)
        print(markdown([row], "").splitlines()[-1], flush=True)

    for i, (folder, steps, authors) in enumerate(zip(args.losses, folders, authors_ratios)):
        subsets = [int(s) for s in args.subsets.split(",") if s] or [steps[0]["losses"].shape[1]]
        for subset in subsets:
            grid = [race_settings(subset, *combo) for combo in combos]
            for j, per_step in enumerate(replay_steps(steps, grid, subset, args.orders, args.seed,
                                                      args.race_losses)):
                add_row(grid[j], subset, per_step, args.measured[i:i + 1], authors, folder.name, *combos[j])
                pooled.setdefault(subset, [[] for _ in combos])[j].extend(per_step)
    if args.pool:  # one network's runs: the authors' ratio is theirs only if they share it
        authors = authors_ratios[0] if len(set(authors_ratios)) == 1 else None
        for subset, per_race in pooled.items():
            for j, combo in enumerate(combos):
                add_row(race_settings(subset, *combo), subset, per_race[j], args.measured, authors, args.pool, *combo)
    how = (f"Command: python benchmarks/simulate_races.py {' '.join(f.as_posix() for f in args.losses)}"
           + (f" --subsets {args.subsets}" if args.subsets else "")
           + f" --start-images {args.start_images} --etas {args.etas} --confidences "
           f"{args.confidences} --orders {args.orders} --seed {args.seed}"
           + ("" if args.race_losses == "fp32" else
              f" --race-losses {args.race_losses} (races read losses from {args.race_losses} forwards; agreement "
              "and regret against fp32 exact selection; work vs exact = work count x that step's measured "
              f"fp32/{args.race_losses} time of a full pass)")
           + (f" --measured {' '.join(m.as_posix() for m in args.measured)}" if args.measured else "")
           + (f" --authors {' '.join(a.as_posix() for a in args.authors)} (authors' loop / exact = "
              f"{', '.join(f'{r:.2f}' for r in authors_ratios)}, measured there)" if args.authors else "")
           + (f" --check {' '.join(checks)}" if checks else "")
           + (f" --pool {args.pool} (rows named so: all folders' steps together)" if args.pool else "")
           + ". Agreement: mean over steps of the share of orders whose race picked the subset's exact winner. "
           "Last column: how often exact selection on the subset picks what it picks on all saved images (the "
           "subset's own sampling noise; 100% when the subset is all of them)."
           + "".join(f" Replayed as drawn, {r} of {c} races measured in {run} reproduced its pick and regret."
                     for run, (r, c) in checks.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "simulated.md").write_text(markdown(rows, how))
    (args.out / "simulated.json").write_text(json.dumps({"how": how, "authors_over_exact": authors_ratios,
                                                         "checks": checks, "rows": rows}, indent=1))
    plot(rows, args.out / "simulated.png")
    print(f"wrote {args.out / 'simulated.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
