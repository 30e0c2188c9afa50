"""Baseline pruners, registered in `harness.prune.pruner.PRUNERS` on import.

``l1_uniform`` (Li et al. 2017), ``fpgm`` (He et al. 2019) and ``random`` prune the same
fraction of every layer (`baselines.uniform`); ``l1_global`` ranks all filters together
(`baselines.global_l1`). All four are one-shot: they prune once at ``prune_epoch`` and leave
recovery to the fine-tuning epochs of the shared schedule (`harness.prune.pruner`).
"""
from baselines import global_l1, uniform  # noqa: F401  (registration happens on import)
