"""Training: the one training loop and evaluation loop every run uses.

- `device`: device choice and precision (AMP, channels_last)
- `engine`: optimizer, learning-rate schedule, `train_epoch`, `evaluate`, the `Engine`
- `recipes`: the authors' per-family defaults (epochs, lr, schedule, pruning settings)
- `repro`: seeding and the environment a record states
"""
