"""Baseline pruners, registered in `harness.prune.pruner.PRUNERS` on import.

The published methods, each as its paper and official code define it (the `MethodCard` on each
class, also in every record and the README's table, says what is faithful and what is adapted):
``pfec`` (`baselines.pfec`), ``sfp`` and ``fpgm`` (`baselines.soft`), ``hrank``
(`baselines.hrank`), ``taylor`` (`baselines.taylor`), ``slimming`` (`baselines.slimming`),
``depgraph`` (`baselines.depgraph`), ``lamp`` (`baselines.lamp`) and ``tp:<Importance>`` for
every importance class of torch-pruning (`baselines.tp_zoo`).

Criterion controls, one-shot at ``prune_epoch``: ``l1_uniform``, ``gm_uniform`` (FPGM's criterion
alone, hard) and ``random`` at a uniform ratio (`baselines.uniform`), ``l1_global`` ranked across
layers (`baselines.global_l1`).

Every one-shot baseline (`baselines.common.OneShotPruner`) also runs on LAASP's iterative schedule
with ``schedule: iterative`` (`baselines.schedules`, `baselines.iterative`), a harness control.
"""
from baselines import (depgraph, global_l1, hrank, iterative, lamp, pfec, slimming, soft,  # noqa: F401 (registration)
                       taylor, tp_zoo, uniform)
