"""Kept so plugins written against the first README keep working: moved to `harness.prune.prunable`.
New code imports from `harness.api`, the plugin API."""
from harness.prune.prunable import Layer, PrunableNetwork, Removal  # noqa: F401
