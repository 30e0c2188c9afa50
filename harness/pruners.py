"""Kept so plugins written against the first README keep working: `harness.pruners` moved to
`harness.prune.pruner` (registry, base class), `harness.prune.plugins` and `harness.job.schedule`.
New code imports from `harness.api`, the plugin API."""
from harness.prune.plugins import load_builtin_pruners, load_plugin  # noqa: F401
from harness.prune.pruner import (PRUNERS, Pruner, PruneSchedule, StepResult,  # noqa: F401
                                  build_pruner_config, unused_options)
