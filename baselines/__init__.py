"""Baseline pruners, registered in `harness.prune.pruner.PRUNERS` on import.

One-shot at ``prune_epoch``: ``l1_uniform`` (Li et al. 2017's criterion at a uniform ratio),
``gm_uniform`` (FPGM's criterion alone, hard), ``random`` (`baselines.uniform`) and ``l1_global``
(`baselines.global_l1`). The published methods, each as its paper and official code define it
(`harness.prune.pruner.MethodCard` on each class says what is faithful and what is adapted):
``sfp`` and ``fpgm`` (`baselines.soft`).
"""
from baselines import global_l1, soft, uniform  # noqa: F401  (registration happens on import)
