"""The ``schedule`` setting of the one-shot baselines (`baselines.common.OneShotPruner`): prune at
once (``oneshot``, the default) or in LAASP's steps with its recovery (``iterative``,
`baselines.iterative`), a harness control that separates LAASP's loss-aware choice of (layer,
criterion) from its iterative schedule.

The iterative settings carry LAASP's names (``step_rule``, ``step_scale``, ``recover_flop``,
``recover_epoch``, ``recover_lr``), so the model family's recipe fills them exactly as it fills
LAASP's: with no extra flag the control runs LAASP's own step size and recovery rule.

Only FLOPs steps (``step_rule: flops``, ``step_scale`` % of the baseline FLOPs per step) define a
slice for a pruner that plans a whole network against a FLOPs budget. LAASP's ratio step is a
fraction of *one* layer's filters, which has no whole-network counterpart, so ``iterative`` with
``step_rule: ratio`` (the VGG recipe's default) is refused with a UserError that says to pass
``--step-rule flops``. Hand-set rates (``--rates``, ``--preset``) have no target to step toward
and are refused with ``iterative`` too.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar

from harness.errors import UserError
from harness.prune.pruner import PruneSchedule
from harness.prune.recovery import validate_recovery
from harness.registry import Registry

# schedule name -> runner(pruner, ctx) -> record fields: "oneshot" (`baselines.common`),
# "iterative" (`baselines.iterative`)
SCHEDULES: Registry[Callable[[Any, Any], dict[str, Any]]] = Registry("schedule")


@dataclass(frozen=True)
class ScheduleConfig(PruneSchedule):
    """The schedule fields of a one-shot baseline's Config (a mixin: put it after the other bases)."""

    schedule: str = "oneshot"     # a name in SCHEDULES
    step_rule: str = "flops"      # iterative: only "flops" (see the module docstring)
    step_scale: float = 1.0       # iterative: % of the baseline FLOPs each step removes
    recover_flop: float = 0.02    # iterative: FLOPs reduction between recoveries (LAASP's rule)
    recover_epoch: int = 6        # iterative: epochs of each recovery
    recover_lr: str = "schedule"  # iterative: harness.prune.recovery.RECOVER_LR_POLICIES
    # read only by the iterative schedule; absent from a one-shot run's resume identity
    ITERATIVE_FIELDS: ClassVar[tuple[str, ...]] = ("step_rule", "step_scale", "recover_flop", "recover_epoch",
                                                   "recover_lr")

    @property
    def iterative(self) -> bool:
        return self.schedule == "iterative"

    def validate_schedule(self, job=None) -> None:
        super().validate_schedule(job)
        SCHEDULES.get(self.schedule)  # unknown: the message lists the registered ones
        if not self.iterative:
            return
        if self.target_flops is None:
            raise UserError("--schedule iterative steps toward --target-flops; hand-set --rates or --preset have no "
                            "target to step toward: give --target-flops, or use --schedule oneshot")
        if self.step_rule != "flops":
            raise UserError(f"--schedule iterative takes FLOPs steps only, got --step-rule {self.step_rule} (a ratio "
                            "step is a fraction of one layer's filters, not a slice of the whole network; the VGG "
                            "recipe's default): pass --step-rule flops (step scale 1.0 % unless --step-scale)")
        if not 0 < self.step_scale <= 100:
            raise UserError(f"--step-scale for --schedule iterative is the % of the baseline FLOPs each step removes, "
                            f"in (0, 100] (got {self.step_scale})")
        validate_recovery(self.recover_epoch, self.recover_flop, self.recover_lr)

    def identity(self) -> dict[str, Any]:
        """What a saved state must match: a one-shot run's leaves out the iterative settings, so
        states saved before they existed still resume."""
        fields = asdict(self)
        if not self.iterative:
            for key in ("schedule", *self.ITERATIVE_FIELDS):
                fields.pop(key)
        return fields

    @classmethod
    def idle_options(cls, options: dict[str, Any]) -> list[str]:
        """Options this config holds but will not read with these values (reported as unused)."""
        return [] if options.get("schedule") == "iterative" else list(cls.ITERATIVE_FIELDS)
