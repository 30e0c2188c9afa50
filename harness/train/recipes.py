"""Training and pruning defaults of the LAASP authors' scripts, per model family.

A recipe fills in every flag the user did not give. Learning-rate milestones are stored as
fractions of the total epochs so that a short run keeps the shape of the paper's schedule; at
the paper's epoch counts they give exactly the paper's milestones (e.g. 0.3 x 200 = 60).
Source: ../shared/design/LAASP.md, "Defaults in the authors' scripts".
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    epochs: int
    prune_epoch: int
    lr: float
    milestone_fractions: tuple[float, ...]
    gamma: float
    weight_decay: float
    batch_size: int
    step_rule: str
    step_scale: float
    max_prune_rate: float
    recover_flop: float
    recover_epoch: int
    subset_size: int

    def milestones(self, epochs: int) -> tuple[int, ...]:
        """Milestone epochs for a run of ``epochs`` epochs (deduplicated, all >= 1)."""
        return tuple(sorted({max(1, round(f * epochs)) for f in self.milestone_fractions}))


RECIPES: dict[str, Recipe] = {
    # ResNet-20/32/56/110 on CIFAR: 200 epochs, x0.1 at 60 120 160 190.
    "cifar_resnet": Recipe(
        epochs=200, prune_epoch=50, lr=0.1, milestone_fractions=(0.3, 0.6, 0.8, 0.95),
        gamma=0.1, weight_decay=5e-4, batch_size=128, step_rule="flops", step_scale=1.0,
        max_prune_rate=0.75, recover_flop=0.02, recover_epoch=6, subset_size=10_000,
    ),
    # VGG-16 on CIFAR: 160 epochs, x0.2 at 40 80 120.
    "cifar_vgg": Recipe(
        epochs=160, prune_epoch=30, lr=0.1, milestone_fractions=(0.25, 0.5, 0.75),
        gamma=0.2, weight_decay=5e-4, batch_size=256, step_rule="ratio", step_scale=0.1,
        max_prune_rate=0.85, recover_flop=0.03, recover_epoch=1, subset_size=10_000,
    ),
    # ResNet-18/34/50 and MobileNetV2 on ImageNet: 100 epochs, x0.1 every 30.
    "imagenet": Recipe(
        epochs=100, prune_epoch=25, lr=0.1, milestone_fractions=(0.3, 0.6, 0.9),
        gamma=0.1, weight_decay=1e-4, batch_size=256, step_rule="flops", step_scale=1.0,
        max_prune_rate=0.75, recover_flop=0.03, recover_epoch=2, subset_size=5_000,
    ),
}


def recipe_for(family: str) -> Recipe:
    return RECIPES[family]
