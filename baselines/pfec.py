"""``pfec``: Li, Kadav, Durdanovic, Samet, Graf, "Pruning Filters for Efficient ConvNets" (ICLR 2017).

As the widely used re-implementation (Eric-mingjie/rethinking-network-pruning,
``cifar/l1-norm-pruning/res56prune.py``, ``vggprune.py``; the authors released none) does it:
the L1 norm of each filter, the smallest go, **only in convs whose output channels feed no
residual addition** (in a ResNet block the first conv; its next conv loses the matching input
channels), optionally skipping the layers the paper found sensitive, with rates per stage or
per layer; a rate p keeps ``int(C x (1 - p))`` filters. The paper's settings are presets:

- ``resnet56-A``: skip convs 16, 20, 38, 54 of the script's numbering (``layer1.7.conv1``,
  ``layer2.0.conv1``, ``layer3.0.conv1``, ``layer3.8.conv1``), 10% in every stage;
- ``resnet56-B``: skip 16, 18, 20, 34, 38, 54 (adds ``layer1.8.conv1``, ``layer2.7.conv1``),
  60%, 30%, 10% in stages 1, 2, 3;
- ``vgg16-A``: conv1 and conv8 to conv13 at 50%, the others kept (VGG-16 "pruned-A").

Without a preset or ``--rates``, one uniform rate over the included layers is solved for
``--target-flops`` (our adaptation). The block-internal layers of residual networks carry
enough of the FLOPs for the usual targets (their outputs and the next conv's inputs shrink).
"""
from __future__ import annotations

from dataclasses import dataclass

from baselines.common import CoupledGroup, is_residual_tied
from baselines.rates import RatesConfig, model_groups
from baselines.schedules import ScheduleConfig
from baselines.uniform import UniformPruner
from harness.errors import UserError
from harness.prune.prunable import PrunableNetwork
from harness.prune.pruner import PRUNERS, MethodCard


@dataclass(frozen=True)
class Preset:
    model: str
    skip: tuple[str, ...]
    rates: tuple[float, ...]  # per stage (ResNet) or per layer (VGG), as the scripts set them


_R56_A_SKIP = ("layer1.7.conv1", "layer2.0.conv1", "layer3.0.conv1", "layer3.8.conv1")
PRESETS = {
    "resnet56-A": Preset("resnet56", _R56_A_SKIP, (0.1, 0.1, 0.1)),
    "resnet56-B": Preset("resnet56", _R56_A_SKIP + ("layer1.8.conv1", "layer2.7.conv1"), (0.6, 0.3, 0.1)),
    "vgg16-A": Preset("vgg16", (), (0.5,) + (0.0,) * 6 + (0.5,) * 6),
}


@dataclass(frozen=True)
class PFECConfig(RatesConfig, ScheduleConfig):
    preset: str | None = None             # the paper's rates and skipped layers for its models
    skip_layers: tuple[str, ...] = ()     # sensitive layers left unpruned (with a preset: added to its list)

    def validate(self, job=None) -> None:
        model = getattr(job, "model", None)
        if self.preset is None:
            super().validate(job)
        else:
            if self.preset not in PRESETS:
                raise UserError(f"unknown --preset {self.preset!r} for pfec; presets: {', '.join(PRESETS)}")
            if self.rates is not None or self.target_flops is not None:
                raise UserError(f"--preset {self.preset} sets the rates: drop --rates and --target-flops")
            if model is not None and model != PRESETS[self.preset].model:
                raise UserError(f"--preset {self.preset} is for {PRESETS[self.preset].model}, not {model}")
            self.validate_schedule(job)
        if model is not None:
            prunable = {root for root, tied in model_groups(model) if not tied}
            unknown = [name for name in self.skip_layers if name not in prunable]
            if unknown:
                raise UserError(f"--skip-layers {','.join(unknown)}: not a layer pfec prunes in {model} (the "
                                f"block-internal convs, e.g. {sorted(prunable)[0]})")

    def skipped(self) -> set[str]:
        return set(self.skip_layers) | set(PRESETS[self.preset].skip if self.preset else ())

    def hand_rates(self) -> tuple[float, ...] | None:
        return PRESETS[self.preset].rates if self.preset else self.rates

    def rate_layers(self, model: str) -> tuple[str, ...]:
        return tuple(root for root, tied in model_groups(model) if not tied and root not in self.skipped())


PFEC_CARD = MethodCard(
    paper="Li, Kadav, Durdanovic, Samet, Graf: Pruning Filters for Efficient ConvNets, ICLR 2017",
    official_code="none released; checked against Eric-mingjie/rethinking-network-pruning @2ac473d "
                  "(cifar/l1-norm-pruning/res56prune.py, vggprune.py)",
    faithful="L1 norm per filter, smallest removed once; only convs whose outputs feed no residual addition "
             "(ResNet: each block's first conv), the next conv loses the matching inputs; skip list of sensitive "
             "layers; per-stage or per-layer rates keeping int(C x (1 - p)); presets resnet56-A, resnet56-B, vgg16-A",
    adapted="one uniform rate over the included layers solved for the FLOPs target unless --preset/--rates; "
            "prunes at the shared prune_epoch of a network trained from scratch (paper: a trained network, then "
            "40 epochs at lr 0.001: the three-stage mode, --from-checkpoint); presets keep the script's skip "
            "lists by layer name on our projection-shortcut ResNet-56",
    defaults="no skipped layers and the solved rate without a preset; the run's recipe for training",
)


@PRUNERS.register("pfec", source=PFEC_CARD.paper)
class PFEC(UniformPruner):
    Config = PFECConfig
    method = PFEC_CARD
    criterion = "l1"
    keep_floor = True

    def groups(self, net: PrunableNetwork) -> list[CoupledGroup]:
        skipped = self.config.skipped()
        groups = [g for g in super().groups(net) if not is_residual_tied(g) and g.root.name not in skipped]
        for i, g in enumerate(groups):  # the FLOPs model and the solver index groups 0..n-1
            g.index = i
        return groups

    def hand_rates(self) -> tuple[float, ...] | None:
        return self.config.hand_rates()

    def plan(self, ctx, net, groups, model, budget, tolerance, generator):
        plan = super().plan(ctx, net, groups, model, budget, tolerance, generator)
        plan.extra.update(preset=self.config.preset, skipped_layers=sorted(self.config.skipped()))
        return plan
