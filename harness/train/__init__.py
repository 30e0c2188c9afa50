"""Training: the one training loop and evaluation loop every run uses.

- `device`: device choice and precision (AMP, channels_last)
- `memory`: the GPU memory a process may use (a trial's share)
- `engine`: optimizer, learning-rate schedule, `train_epoch`, `evaluate`, the `Engine`
- `compiled`: ``--compile``, torch.compile of the training step where shapes are final
- `distributed`: data-parallel ranks (`World`), DDP and synchronized batch norm
- `recipes`: the authors' per-family defaults (epochs, lr, schedule, pruning settings)
- `repro`: seeding and the environment a record states
"""
