"""Pruning machinery shared by every pruner (LAASP in `laasp/`, the others in `baselines/`).

- `pruner`: the `PRUNERS` registry, the `Pruner` base class, `PruneSchedule`, `StepResult`
- `prunable`: `PrunableNetwork`, physical filter removal through torch-pruning's dependency graph
- `criteria`: the filter-scoring criteria registry (`CRITERIA`)
- `probe`: data-driven scores (feature-map ranks, Taylor)
- `recovery`: recovery epochs between steps (LAASP's and the iterative schedule's)
- `flops`: the one FLOPs/parameter counter
- `plugins`: built-in pruner packages and user plugins

A plugin author imports everything from one place: `harness.api`.
"""
