"""ASHA early stopping for a search, the same in both executors and rebuilt from the records.

Asynchronous successive halving (Li et al. 2020), as Ray Tune's ``AsyncHyperBandScheduler``
runs it with one bracket: rungs at ``grace_period x reduction_factor^k`` epochs (up to
``max_t``); the first report of a trial at or past a rung it has not reached before is
compared with the ``1 - 1/reduction_factor`` quantile of the values recorded there so far,
and the trial stops when it is below (above, for a metric to minimise); a trial reaching
``max_t`` stops. Its state is a few numbers per trial, so after a crash it is rebuilt by
replaying the records' histories in trial order (`replay`): with one trial at a time the
resumed search makes the decisions the uninterrupted one made.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Iterable

import numpy as np


class Rungs:
    def __init__(self, grace_period: int, reduction_factor: float, max_t: int, mode: str, metric: str):
        count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
        self.rungs: list[tuple[float, dict[str, float]]] = [
            (grace_period * reduction_factor ** k, {}) for k in reversed(range(count))]
        self.rf, self.max_t, self.metric = reduction_factor, max_t, metric
        self.sign = 1.0 if mode == "max" else -1.0

    def decide(self, name: str, metrics: dict[str, Any]) -> bool:
        """Record one report of trial ``name``; True when the trial should stop now. A trial's
        final report (``phase: done``) is recorded but never stopped."""
        epoch, value = metrics.get("epoch"), metrics.get(self.metric)
        final = metrics.get("phase") == "done"
        if epoch is None or value is None:
            return False
        if epoch >= self.max_t:
            return not final
        reward = self.sign * float(value)
        for milestone, recorded in self.rungs:
            if epoch < milestone or name in recorded:
                continue
            cutoff = self._cutoff(recorded)
            recorded[name] = reward
            return cutoff is not None and reward < cutoff and not final
        return False

    def _cutoff(self, recorded: dict[str, float]) -> float | None:
        if not recorded:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rung (diverged trials)
            return float(np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100))

    def reason(self, metrics: dict[str, Any]) -> str:
        """What a stopped trial's record says."""
        return (f"stopped early by ASHA after {metrics.get('epoch')} epochs "
                f"({self.metric} {float(metrics[self.metric]):.4g})")

    def replay(self, name: str, reports: Iterable[dict[str, Any]]) -> int | None:
        """Feed a trial's past reports; the index of the one that stopped it, or None."""
        for i, metrics in enumerate(reports):
            if self.decide(name, metrics):
                return i
        return None
