"""torch.compile for the training step, where it can pay off, falling back to eager.

The engine asks for a compiled module only in epochs whose shapes are final (an unpruned run;
a pruned run after its last structural change): a graph compiled before a removal would be
thrown away at the next one. The compiled module wraps the same parameters, so the optimizer,
soft masks (in-place weight changes) and checkpoints (the plain module's state_dict) see one
model, and a resumed run compiles again on its first epoch.

Off by default: on the 2-core CPU of this project compiled training measured 0.72x eager after
~200 s of compile time on a loaded machine (benchmarks/bench_compile.py) and 0.87x on a quiet one
(benchmarks/bench_throughput.py --compile); on a GPU it is the user's call (--compile)
until the GPU check (benchmarks/gpu_check.sh) has measured it there.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

log = logging.getLogger("harness")


class CompiledTraining:
    """The compiled version of the model being trained (compiled again when the engine is handed
    another model object); eager when disabled or when torch.compile is not available here (the
    reason is kept for the record)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.fallback: str | None = None
        self.compiled_models = 0
        self._cache: tuple[nn.Module, nn.Module] | None = None  # (model, its compiled module)

    def module(self, model: nn.Module) -> nn.Module:
        if not self.enabled or self.fallback is not None:
            return model
        if self._cache is not None and self._cache[0] is model:
            return self._cache[1]
        try:
            import torch._dynamo  # here, not at the top: importing dynamo costs every run seconds

            # A frame dynamo cannot compile runs eagerly (with a warning) instead of failing a run.
            torch._dynamo.config.suppress_errors = True
            compiled = torch.compile(model)
        except Exception as exc:  # e.g. a Python version torch.compile does not support
            self.fallback = f"{type(exc).__name__}: {exc}"
            log.warning("torch.compile unavailable (%s); training eagerly", self.fallback)
            return model
        self._cache = (model, compiled)
        self.compiled_models += 1
        return compiled

    def summary(self) -> dict[str, Any]:
        """The record's ``compile`` block: asked for, how many models were compiled, why not."""
        return {"requested": self.enabled, "compiled_models": self.compiled_models, "fallback": self.fallback}
