"""One job: a run from options to record.

- `options`: the run options table (CLI flags and YAML keys) -> `JobConfig`
- `config`: `JobConfig`, validated once
- `schedule`: the one schedule every pruner runs in (train, prune, top up, fine-tune)
- `run`: `run_job`, its context, resumable state and record
- `start`: where a run starts from (resumed state, three-stage checkpoint, ``--weights``)
- `launch`: ``--workers N``, the data-parallel launcher (spawned ranks, or torchrun's)
- `scratch`: Scratch-E/B controls, another run's architecture from random initialisation
- `groups`: the pruner and table group a record belongs to
- `checkpoint`: architecture + tensors, loaded with ``weights_only=True``
- `records`: JSON records written atomically
- `latency`: measured speed-up of the pruned network
"""
