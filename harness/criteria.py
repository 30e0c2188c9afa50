"""Kept so plugins written against the first README keep working: moved to `harness.prune.criteria`.
New code imports from `harness.api`, the plugin API."""
from harness.prune.criteria import CRITERIA, CriterionInput, euclidean_distance_sum, filter_rows, lowest  # noqa: F401
