"""Measured inference latency, and the speed-up of a pruned network over its unpruned architecture.

FLOPs are a proxy; wall-clock latency is what a user gets. Both networks are timed on the same
device, in eval mode under ``torch.inference_mode``, on random inputs of the dataset's shape,
after warm-up passes; the figure kept is the median of the timed passes (robust to the odd
scheduler hiccup). The two networks are timed alternately, pass by pass, so that a change of
machine load during the measurement hits both alike. On CUDA every pass is bracketed by
``torch.cuda.synchronize``.

The record stores::

    "latency": {"device": "cpu (...)", "batch_1": {"pruned_ms", "baseline_ms", "speedup", "repeats"},
                "batch_64": {...}, "repeats": 20, "warmup": 2, "precision": "float32",
                "method": "median of 20 timed forward passes after 2 warm-up passes ..."}

A time budget keeps it cheap on slow hardware: when one pass is so slow that ``repeats`` of them
would exceed ``budget_s`` (per batch size, both networks together), fewer are timed (never
fewer than ``MIN_REPEATS``); the batch entry's ``repeats`` says how many.
"""
from __future__ import annotations

import contextlib
import platform
import statistics
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn

MIN_REPEATS = 3
DEFAULT_BATCH_SIZES = (1, 64)
DEFAULT_WARMUP = 2
DEFAULT_REPEATS = 20
DEFAULT_BUDGET_S = 2.0


def device_description(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"cpu ({platform.processor() or platform.machine()}, {threads} thread{'s' if threads != 1 else ''})"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Timer:
    """One network ready to be timed: eval mode, on ``device``, a fixed random input per batch size."""

    def __init__(self, model: nn.Module, input_size: int, in_channels: int, device: torch.device,
                 autocast: Callable[[], contextlib.AbstractContextManager] | None, channels_last: bool):
        self.model = model
        self.was_training = model.training
        model.eval().to(device)
        self.device = device
        self.input_size, self.in_channels = input_size, in_channels
        self.autocast = autocast or contextlib.nullcontext
        self.channels_last = channels_last
        self.inputs: dict[int, torch.Tensor] = {}

    def input(self, batch: int) -> torch.Tensor:
        if batch not in self.inputs:
            gen = torch.Generator().manual_seed(batch)
            x = torch.randn(batch, self.in_channels, self.input_size, self.input_size, generator=gen).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.inputs[batch] = x
        return self.inputs[batch]

    def once(self, batch: int) -> float:
        """Seconds of one forward pass."""
        x = self.input(batch)
        with torch.inference_mode(), self.autocast():
            _sync(self.device)
            start = time.perf_counter()
            self.model(x)
            _sync(self.device)
            return time.perf_counter() - start

    def restore(self) -> None:
        self.model.train(self.was_training)


def _time_together(timers: Sequence[_Timer], batch: int, warmup: int, repeats: int,
                   budget_s: float | None) -> tuple[list[list[float]], int]:
    """Warm up every timer, then time them alternately; returns (seconds per timer, repeats done)."""
    first = [0.0] * len(timers)
    for _ in range(max(1, warmup)):
        first = [t.once(batch) for t in timers]
    n = repeats
    if budget_s is not None:
        n = max(MIN_REPEATS, min(repeats, int(budget_s / max(sum(first), 1e-9))))
    times: list[list[float]] = [[] for _ in timers]
    for i in range(n):
        order = range(len(timers)) if i % 2 == 0 else reversed(range(len(timers)))
        for k in order:
            times[k].append(timers[k].once(batch))
    return times, n


def _method(repeats: int, warmup: int, paired: bool) -> str:
    return (f"median of {repeats} timed forward passes after {warmup} warm-up passes (per batch size; fewer when "
            "one pass is slow, see each batch's repeats), eval mode, torch.inference_mode, random inputs"
            + (", pruned and reference timed alternately" if paired else ""))


def measure_latency(model: nn.Module, input_size: int, in_channels: int, device: torch.device | str = "cpu",
                    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, warmup: int = DEFAULT_WARMUP,
                    repeats: int = DEFAULT_REPEATS, budget_s: float | None = DEFAULT_BUDGET_S,
                    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
                    channels_last: bool = False) -> dict[str, Any]:
    """Median latency (ms) of one forward pass of ``model`` per batch size.

    Returns ``{"device", "batch_1": {"ms", "repeats"}, ..., "repeats", "warmup", "method"}``.
    The model is put in eval mode for the measurement and its train/eval mode restored after.
    """
    device = torch.device(device)
    timer = _Timer(model, input_size, in_channels, device, autocast, channels_last)
    out: dict[str, Any] = {"device": device_description(device)}
    try:
        for b in batch_sizes:
            (times,), n = _time_together([timer], b, warmup, repeats, budget_s)
            out[f"batch_{b}"] = {"ms": 1000 * statistics.median(times), "repeats": n}
    finally:
        timer.restore()
    out.update(repeats=repeats, warmup=warmup, method=_method(repeats, warmup, False))
    return out


def speedup(pruned_model: nn.Module, reference_model: nn.Module, input_size: int, in_channels: int,
            device: torch.device | str = "cpu", batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
            warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS,
            budget_s: float | None = DEFAULT_BUDGET_S,
            autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
            channels_last: bool = False) -> dict[str, Any]:
    """Latency of ``pruned_model`` against ``reference_model`` (the unpruned architecture), same device.

    The record's ``latency`` entry: ``{"device", "batch_1": {"pruned_ms", "baseline_ms", "speedup",
    "repeats"}, "batch_64": {...}, "repeats", "warmup", "method"}`` with speedup = baseline_ms /
    pruned_ms (above 1: the pruned network is faster). The reference's weights do not matter
    (a freshly built model will do); it is moved to ``device``.
    """
    device = torch.device(device)
    timers = [_Timer(m, input_size, in_channels, device, autocast, channels_last)
              for m in (pruned_model, reference_model)]
    out: dict[str, Any] = {"device": device_description(device)}
    try:
        for b in batch_sizes:
            (pruned, reference), n = _time_together(timers, b, warmup, repeats, budget_s)
            p_ms, r_ms = 1000 * statistics.median(pruned), 1000 * statistics.median(reference)
            out[f"batch_{b}"] = {"pruned_ms": p_ms, "baseline_ms": r_ms, "speedup": r_ms / p_ms, "repeats": n}
    finally:
        for t in timers:
            t.restore()
    precision = "float32"
    if autocast is not None:
        precision = "autocast"
    out.update(repeats=repeats, warmup=warmup, precision=precision, method=_method(repeats, warmup, True))
    return out


def job_speedup(ctx, **kwargs: Any) -> dict[str, Any]:
    """The ``latency`` record entry of a finished job: its network against a fresh unpruned one.

    Uses the job's device and precision (autocast and channels_last on CUDA, float32 on CPU).
    """
    from harness.models import build_model

    reference = build_model(ctx.config.model, ctx.data.num_classes, ctx.data.in_channels)
    precision = ctx.precision
    reference = precision.prepare_model(reference)
    autocast = precision.autocast if precision.dtype is not None else None
    result = speedup(ctx.model, reference, ctx.data.image_size, ctx.data.in_channels, precision.device,
                     autocast=autocast, channels_last=precision.channels_last, **kwargs)
    if autocast is not None:
        result["precision"] = f"autocast {str(precision.dtype).replace('torch.', '')}"
    return result
