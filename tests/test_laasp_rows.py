"""LAASP's candidate rows per forward: sized from the model's activations and the memory a process
may use, under 2^31 elements per tensor; stacked inputs keep channels_last; the plan is used."""
from __future__ import annotations

import functools

import pytest
import torch

from harness.models import build_model
from harness.prune.prunable import PrunableNetwork
from laasp import selection
from laasp.rows import HEADROOM, INDEX_LIMIT, ActivationProfile, plan_rows, profile_activations
from laasp.selection import Candidate, CandidateEvaluator, forward_chain, stack_rows

GIB = 2**30


@functools.lru_cache(maxsize=None)  # a 224 px profile costs seconds on a small CPU: once per model
def _profile(name: str, size: int) -> ActivationProfile:
    torch.manual_seed(0)
    model = build_model(name, 10, 3).eval()
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        return profile_activations(forward_chain(model, x), x)


@pytest.mark.parametrize("name,size,largest", [
    ("resnet56", 32, 16 * 32 * 32),           # every stage-1 activation
    ("mobilenet_v2", 224, 96 * 112 * 112),    # the first expansion, at 112 px
    ("resnet50", 224, 64 * 112 * 112),        # the stem conv (layer1's 256 x 56 x 56 is as large)
])
def test_profile_finds_the_largest_activation(name, size, largest) -> None:
    profile = _profile(name, size)
    assert profile.largest == largest and profile.stage_inputs[0] == 3 * size * size
    assert profile.bytes_per_row == 4 * largest * 4 and not profile.measured  # estimated off CUDA


def _fits(profile: ActivationProfile, available: int, chunk: int, rows: int, deepest: int) -> bool:
    return (profile.fixed_bytes + chunk * profile.prefix_bytes(deepest) + rows * profile.bytes_per_row
            <= HEADROOM * available)


@pytest.mark.parametrize("name,size,available_gib", [("resnet56", 32, 0.5), ("resnet50", 224, 8),
                                                     ("mobilenet_v2", 224, 8), ("resnet50", 224, 2)])
def test_rows_fit_the_memory_budget(name, size, available_gib) -> None:
    profile = _profile(name, size)
    available = int(available_gib * GIB)
    deepest = len(profile.stage_inputs) - 1
    chunk, rows = plan_rows(profile, available, chunk=256, preferred=2048, deepest_first=deepest)
    assert 1 <= chunk <= 256 and chunk <= rows <= 2048
    assert _fits(profile, available, chunk, rows, deepest)
    assert rows * profile.largest <= INDEX_LIMIT
    if rows < 2048 and (rows + 1) * profile.largest <= INDEX_LIMIT:  # not needlessly small
        assert not _fits(profile, available, chunk, rows + 1, deepest)


def test_a_large_gpu_is_still_capped_at_two_to_the_31_elements() -> None:
    profile = _profile("mobilenet_v2", 224)
    chunk, rows = plan_rows(profile, 1024 * GIB, chunk=256, preferred=2048, deepest_first=0)
    assert chunk == 256 and rows == INDEX_LIMIT // (96 * 112 * 112) == 1783  # the old fixed 2048 overflowed


def test_a_small_share_shrinks_the_chunk_rather_than_overflow() -> None:
    profile = ActivationProfile(stage_inputs=(100, 1000, 1000), largest=1000, bytes_per_row=16_000, fixed_bytes=0)
    # one candidate on a 256-image chunk needs 256 x (8,000 cached + 16,000) bytes; only 1.2 MB usable
    chunk, rows = plan_rows(profile, int(2e6), chunk=256, preferred=2048, deepest_first=2)
    assert chunk == int(2e6 * HEADROOM) // (8_000 + 16_000) == 50 and rows >= chunk
    assert _fits(profile, int(2e6), chunk, rows, 2)


def test_cpu_plan_is_unchanged() -> None:
    profile = _profile("resnet56", 32)
    assert plan_rows(profile, None, chunk=256, preferred=256, deepest_first=5) == (256, 256)
    assert plan_rows(profile, None, chunk=48, preferred=256, deepest_first=5) == (48, 256)


def test_evaluator_uses_the_plan(monkeypatch) -> None:
    """A tight memory budget shrinks chunks and batches; the losses stay those of the unconstrained pass."""
    torch.manual_seed(0)
    model = build_model("resnet20", 10, 1).eval()
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    net = PrunableNetwork(model, 8, 1)

    def candidates():
        return [Candidate(net.removal(layer, [0, 1]), [(layer.name, "l1")]) for layer in net.layers[:6]]

    free = CandidateEvaluator(model, x, y, chunk_size=64)
    loose = candidates()
    free.losses(loose)
    assert free.plan == (64, 256)
    tight = CandidateEvaluator(model, x, y, chunk_size=64)
    per_row, prefix = tight.profile.bytes_per_row, tight.profile.prefix_bytes(len(tight.stages) - 1)
    budget = int((24 * prefix + 48 * per_row) / HEADROOM) + 1  # room for a 24-image chunk and two candidates
    monkeypatch.setattr(selection, "available_bytes", lambda device: budget)
    constrained = candidates()
    tight.losses(constrained)
    chunk, rows = tight.plan
    assert chunk < 64 and rows < 6 * chunk
    for a, b in zip(loose, constrained):
        assert b.images == 64 and b.loss == pytest.approx(a.loss, rel=1e-9)


def test_stacked_rows_keep_channels_last() -> None:
    x = torch.randn(3, 4, 5, 6).contiguous(memory_format=torch.channels_last)
    stacked = stack_rows(x, 4)
    assert stacked.shape == (12, 4, 5, 6) and stacked.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(stacked, x.repeat(4, 1, 1, 1))
    plain = torch.randn(3, 4, 5, 6)
    assert stack_rows(plain, 2).is_contiguous() and torch.equal(stack_rows(plain, 2), plain.repeat(2, 1, 1, 1))
