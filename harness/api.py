"""The plugin API: everything a pruner author needs, from one import.

    from harness.api import PRUNERS, Pruner, PruneSchedule, PrunableNetwork, CRITERIA, UserError

A pruner is a `Pruner` subclass registered with ``@PRUNERS.register(name)``, whose ``Config``
dataclass extends `PruneSchedule`; ``prune(ctx)`` removes filters from ``ctx.model`` (through
`PrunableNetwork`, which also removes every coupled channel) and returns the record fields;
its other lifecycle hooks act during training. `examples/my_pruner.py` (one-shot) and
`examples/soft_pruner.py` (soft masks every epoch) are complete ones. These names are the stable surface: the modules
behind them may move, this list does not shrink.
"""
from harness.errors import UserError
from harness.prune.criteria import CRITERIA, CriterionInput, filter_rows, lowest
from harness.prune.flops import Cost, count_cost, reduction
from harness.prune.prunable import Layer, PrunableNetwork
from harness.prune.pruner import PRUNERS, MethodCard, Pruner, PruneSchedule, StepResult, decide

__all__ = ["CRITERIA", "Cost", "CriterionInput", "Layer", "MethodCard", "PRUNERS", "PrunableNetwork", "PruneSchedule",
           "Pruner", "StepResult", "UserError", "count_cost", "decide", "filter_rows", "lowest", "reduction"]
