"""A stand-in for `harness.job.run.JobContext` that pruners can be driven with directly, on
hand-made or random data (no dataset, no schedule): what the pruner tests share."""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from harness.prune.flops import count_cost
from harness.train.device import Precision
from harness.train.engine import loss_passes


class FakeCtx:
    """The part of the job context a pruner uses; ``batches`` are random training data."""

    def __init__(self, model: nn.Module, size: int, in_channels: int = 3, seed: int = 0, model_name: str = "test",
                 classes: int = 10, batch_size: int = 16):
        self.model = model
        self.data = SimpleNamespace(image_size=size, in_channels=in_channels)
        self.config = SimpleNamespace(seed=seed, pruner="test", model=model_name,
                                      optim=SimpleNamespace(batch_size=batch_size))
        self.state = SimpleNamespace(epochs_trained=0, optimizer=None)
        self.stage = "prune"
        self.baseline_cost = count_cost(model, size, in_channels)
        self.reports: list[dict] = []
        self.timings: dict[str, float] = {}
        self.precision = Precision(torch.device("cpu"), amp=False)
        self.classes, self.batch_size = classes, batch_size

    def report(self, entry: dict) -> None:
        self.reports.append(entry)

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds

    def reduction(self) -> float:
        return 1.0 - count_cost(self.model, self.data.image_size, self.data.in_channels).flops / self.baseline_cost.flops

    def cost_fields(self) -> dict:
        return {"flops_reduction": self.reduction()}

    def training_batches(self, images: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        batches, seen = [], 0
        while seen < images:
            n = min(self.batch_size, images - seen)
            x = torch.randn(n, self.data.in_channels, self.data.image_size, self.data.image_size, generator=gen)
            batches.append((x, torch.randint(0, self.classes, (n,), generator=gen)))
            seen += n
        return batches

    def passes(self, batches, backward: bool = False) -> float:
        was = self.model.training
        self.model.eval()
        try:
            return loss_passes(self.model, batches, self.precision, backward)
        finally:
            self.model.train(was)
