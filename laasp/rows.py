"""How many stacked candidate rows LAASP's evaluator puts in one forward pass.

Candidates are evaluated together by stacking copies of a chunk of the loss subset along the
batch dimension. On a GPU more rows mean fewer, fuller kernels, but the count must fit the
memory this process may use (its share of a GPU shared by several sweep trials included) and
keep every tensor under 2^31 elements (beyond that some CUDA kernels index with 32 bits). A
fixed count cannot do both: 2048 rows of ResNet-50 at 224 px are a 6.6 GB activation, of
MobileNetV2 about 2.5e9 elements. So the count is sized from the model's activations:

- `profile_activations` runs the stage chain once and records the elements per image of each
  stage's input and of the largest activation; on CUDA it also measures the peak memory of a
  forward at two row counts, which gives the bytes each extra row costs and the part that does
  not grow with the rows (kernel workspaces). Elsewhere the bytes per row are estimated.
- `plan_rows` turns a profile and the bytes available into (images per chunk, rows per forward).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

INDEX_LIMIT = 2**31 - 1
HEADROOM = 0.6        # share of the available bytes the evaluator plans with: the allocator fragments
ESTIMATE_FACTOR = 4   # live activations per row without a measurement: a block's input (for its shortcut),
                      # a conv output, its batch-norm output and the masked copy
PROBE_ROWS = (2, 8)


@dataclass(frozen=True)
class ActivationProfile:
    stage_inputs: tuple[int, ...]  # elements per image entering each stage (stage 0: the image itself)
    largest: int                   # elements per image of the largest single activation
    bytes_per_row: int             # bytes one more stacked row adds to a forward, masked copy included
    fixed_bytes: int = 0           # bytes of a forward that do not grow with the rows (measured on CUDA)
    element_size: int = 4
    measured: bool = False

    def prefix_bytes(self, deepest_first: int) -> int:
        """Bytes per image of the cached clean inputs of stages 1..deepest_first (stage 0's is the subset)."""
        return sum(self.stage_inputs[1:deepest_first + 1]) * self.element_size


def _run(stages: list[nn.Module], x: torch.Tensor) -> tuple[list[int], int]:
    """Per-image elements of each stage input and of the largest leaf-module output, for one pass."""
    rows = x.shape[0]
    largest = [x[0].numel()]

    def hook(_module, _inp, out) -> None:
        if isinstance(out, torch.Tensor) and out.dim() > 0:
            largest[0] = max(largest[0], out.numel() // rows)

    leaves = [m for s in stages for m in s.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    inputs = []
    try:
        h = x
        for stage in stages:
            inputs.append(h[0].numel())
            h = stage(h)
    finally:
        for handle in handles:
            handle.remove()
    return inputs, largest[0]


def _peak_bytes(stages: list[nn.Module], x: torch.Tensor) -> int:
    device = x.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    h = x
    for stage in stages:
        h = stage(h)
    del h
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def profile_activations(stages: list[nn.Module], example: torch.Tensor) -> ActivationProfile:
    """Sizes of a forward of ``example[:1]`` through ``stages`` (call in eval and inference mode)."""
    image = example[:1]
    inputs, largest = _run(stages, image)
    size = image.element_size()
    estimate = ESTIMATE_FACTOR * largest * size
    if image.device.type != "cuda":
        return ActivationProfile(tuple(inputs), largest, estimate, 0, size, False)
    # two row counts: the slope is what a row costs, the rest is workspace that does not grow with it
    a, b = PROBE_ROWS
    peaks = [_peak_bytes(stages, image.expand(n, *image.shape[1:]).clone(memory_format=torch.preserve_format))
             for n in (a, b)]
    slope = max((peaks[1] - peaks[0]) // (b - a), 2 * largest * size)
    fixed = max(0, peaks[1] - b * slope)
    return ActivationProfile(tuple(inputs), largest, slope + largest * size, fixed, size, True)


def plan_rows(profile: ActivationProfile, available: int | None, chunk: int, preferred: int,
              deepest_first: int) -> tuple[int, int]:
    """(images per chunk, rows per stacked forward) for a pass whose deepest first stage is ``deepest_first``.

    ``available``: bytes this process may still allocate (None: not measured, as on CPU; then only
    the index limit applies). The chunk shrinks only when one candidate on a whole chunk would not
    fit; rows are at least one chunk, at most ``preferred``.
    """
    by_index = max(1, INDEX_LIMIT // max(1, profile.largest))
    if available is None:
        chunk = min(chunk, by_index)
        return chunk, max(chunk, min(preferred, by_index))
    usable = int(available * HEADROOM) - profile.fixed_bytes
    cached = profile.prefix_bytes(deepest_first)
    chunk = max(1, min(chunk, by_index, usable // (cached + profile.bytes_per_row)))
    rows = (usable - chunk * cached) // profile.bytes_per_row
    return chunk, max(chunk, min(preferred, by_index, rows))
