"""bench_approx_frontier.py resumes from saved losses: a step already saved is applied, not re-measured,
and the run goes on exactly as an uninterrupted one."""
from __future__ import annotations

import argparse
import json
import sys
from types import SimpleNamespace

import pytest
import torch

from harness.errors import UserError
from harness.job.checkpoint import save_checkpoint
from tests.helpers import REPO, distinct_resnet20

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_approx_frontier  # noqa: E402


class TinyData:
    """The benchmark's data interface on 120 random 8x8 images; ``seed`` draws another subset."""
    image_size, in_channels = 8, 1

    def loss_subset(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = distinct_resnet20()
    return save_checkpoint(tmp_path_factory.mktemp("fixture") / "c.pt", model, "resnet20", 10, 1)


def run(checkpoint, losses_dir, steps: int, subset_seed=None, earlier=None, bf16_losses=False) -> dict:
    args = argparse.Namespace(steps=steps, step_scale=3.0, chunk_size=60, seed=0, subset_seed=subset_seed,
                              reference_steps=0, save_losses=str(losses_dir), bf16_losses=bf16_losses)
    return bench_approx_frontier.measure_size(args, checkpoint, TinyData(), 120, [], torch.device("cpu"),
                                              earlier=earlier)


def test_a_resumed_run_measures_only_the_new_steps_and_picks_as_an_uninterrupted_one(checkpoint, tmp_path):
    whole = run(checkpoint, tmp_path / "whole", 3)
    first = run(checkpoint, tmp_path / "resumed", 2)
    resumed = run(checkpoint, tmp_path / "resumed", 3, earlier=first)
    assert [r["step"] for r in resumed["steps"]] == [1, 2, 3]  # the earlier rows kept, step 3 measured
    assert resumed["steps"][:2] == first["steps"]
    assert resumed["steps"][2]["winner_loss"] == whole["steps"][2]["winner_loss"]
    saved = [torch.load(tmp_path / d / "n120-step003.pt", weights_only=True) for d in ("whole", "resumed")]
    assert torch.equal(saved[0]["losses"], saved[1]["losses"]) and saved[0]["sources"] == saved[1]["sources"]


def test_steps_saved_on_another_subset_are_refused(checkpoint, tmp_path):
    run(checkpoint, tmp_path, 1)
    with pytest.raises(UserError, match="another loss subset"):
        run(checkpoint, tmp_path, 2, subset_seed=5)


def test_only_a_frontier_of_the_same_setup_is_resumed(tmp_path):
    how = ("resnet56 trained 5 epochs ...; up to 3 steps per subset size ... --subsets 10000 --steps 3 "
           "--train-epochs 5 --threads 1")
    path = tmp_path / "frontier.json"
    path.write_text(json.dumps({"how": how, "sizes": [{"subset": 10000, "steps": [], "reference_s": []}]}))
    other = how.replace("trained 5 epochs", "trained 9 epochs")
    assert bench_approx_frontier.resumable_sizes(path, other) == {}
    longer = how.replace("up to 3 steps", "up to 8 steps").replace("--steps 3", "--steps 8")
    assert list(bench_approx_frontier.resumable_sizes(path, longer)) == [10000]
    assert bench_approx_frontier.resumable_sizes(tmp_path / "absent.json", how) == {}


def test_bad_saved_steps_give_one_error_line(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_approx_frontier, "main", lambda: (_ for _ in ()).throw(UserError("the problem")))
    with pytest.raises(SystemExit) as exit_:
        bench_approx_frontier.entry()
    assert exit_.value.code == 2 and capsys.readouterr().err == "error: the problem\n"


def test_bf16_losses_are_saved_beside_the_fp32_ones_and_timed(checkpoint, tmp_path) -> None:
    size = run(checkpoint, tmp_path / "losses", steps=1, bf16_losses=True)
    saved = torch.load(tmp_path / "losses" / "n120-step001.pt", weights_only=True)
    assert saved["losses_bf16"].shape == saved["losses"].shape and not torch.equal(saved["losses_bf16"],
                                                                                   saved["losses"])
    assert saved["exact_s"] == size["steps"][0]["exact_s"] and size["steps"][0]["exact_bf16_s"] > 0
