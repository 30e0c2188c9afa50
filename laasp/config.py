"""LAASP's hyperparameters, validated once at the edge (CLI, YAML) and passed down as one object.

Defaults per model family come from `harness.train.recipes` (the authors' scripts, LAASP.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.errors import UserError
from harness.prune.pruner import PruneSchedule
from harness.prune.recovery import validate_recovery

STEP_RULES = ("flops", "ratio")
SELECTION_MODES = ("exact", "approx")
# Which training images the loss subset is drawn from. "random": uniformly from the whole
# training set (ours); "authors": uniformly from its first AUTHORS_SUBSET_POOL images, as the
# authors' scripts do (random.sample(range(0, 149999), 5000) on ImageNet's ImageFolder: classes
# in sorted order, so about the first 117 of 1,000 classes; range(0, 49999) on CIFAR: all but one).
SUBSET_POLICIES = ("random", "authors")
AUTHORS_SUBSET_POOL = 149_999
RACE_FIELDS = ("approx_start_fraction", "approx_eta", "approx_confidence", "approx_precision")


@dataclass(frozen=True)
class LAASPConfig(PruneSchedule):
    target_flops: float                  # rate_flop: stop once the FLOPs reduction reaches it
    prune_epoch: int = 50
    recover_epoch: int = 6
    recover_flop: float = 0.02
    step_rule: str = "flops"             # "flops": step_scale % of baseline FLOPs; "ratio": step_scale x filters
    step_scale: float = 1.0
    max_prune_rate: float = 0.75         # per-layer cap on the pruned fraction of filters
    subset_size: int | None = 10_000     # None: min(recipe, training set)
    criteria: tuple[str, ...] = ("l1", "l2", "eucl", "cos")
    selection: str = "exact"             # "approx": a race over candidates (laasp.racing)
    approx_start_fraction: float | None = None  # approx: round 1's share of the subset (None: 800 images, laasp.racing)
    approx_eta: int = 2                  # approx: keep 1/eta of the field per round, eta x the images (laasp.racing)
    approx_confidence: float | None = None  # approx: drop clear losers early at this one-sided level
    approx_precision: str = "fp32"       # approx: the race's forwards (laasp.racing.RACE_PRECISIONS)
    approx_check: bool = False           # also run the other selection (exact/approx) each step, record agreement
    chunk_size: int = 256                # subset images per pass in the candidate evaluator
    candidate_batch: int | None = None   # rows per forward when stacking candidates (None: 256 CPU, 2048 CUDA)
    recover_lr: str = "schedule"         # harness.prune.recovery.RECOVER_LR_POLICIES
    subset_policy: str = "random"        # SUBSET_POLICIES
    seed: int = 0                        # random criteria, subset draw (set from the run's seed)

    def validate(self, job=None) -> None:
        from harness.prune.criteria import CRITERIA

        super().validate(job)
        if not self.criteria:
            raise UserError(f"--criteria is empty; give a non-empty comma-separated subset of {','.join(CRITERIA.names())}")
        for name in self.criteria:
            if name not in CRITERIA:
                raise UserError(f"unknown criterion {name!r} in --criteria; registered: {', '.join(CRITERIA.names())}")
        if len(set(self.criteria)) != len(self.criteria):
            raise UserError(f"--criteria lists a criterion twice: {','.join(self.criteria)}")
        if self.step_rule not in STEP_RULES:
            raise UserError(f"--step-rule must be one of {', '.join(STEP_RULES)} (got {self.step_rule!r})")
        if not self.step_scale > 0:
            raise UserError(f"--step-scale must be > 0 (got {self.step_scale})")
        if self.step_rule == "ratio" and self.step_scale >= 1:
            raise UserError(f"--step-scale for --step-rule ratio is a fraction of the layer's filters in (0, 1) (got {self.step_scale})")
        validate_recovery(self.recover_epoch, self.recover_flop, self.recover_lr)
        if self.subset_size is not None and self.subset_size < 1:
            raise UserError(f"--subset-size must be >= 1 (got {self.subset_size})")
        if self.selection not in SELECTION_MODES:
            raise UserError(f"--selection must be one of {', '.join(SELECTION_MODES)} (got {self.selection!r})")
        if self.approx_start_fraction is not None and not 0 < self.approx_start_fraction <= 1:
            raise UserError(f"--approx-start-fraction must be in (0, 1] (got {self.approx_start_fraction})")
        if self.approx_eta < 2:
            raise UserError(f"--approx-eta must be an integer >= 2 (got {self.approx_eta})")
        if self.approx_confidence is not None and not 0.5 < self.approx_confidence < 1:
            raise UserError(f"--approx-confidence must be in (0.5, 1), e.g. 0.99 (got {self.approx_confidence})")
        from laasp.racing import RACE_PRECISIONS

        if self.approx_precision not in RACE_PRECISIONS:
            raise UserError(f"--approx-precision must be {' or '.join(RACE_PRECISIONS)} (got {self.approx_precision!r})")
        if self.approx_precision == "bf16" and job is not None:
            from harness.train.device import cuda_has_native_bf16, select_device

            device = select_device(job.device)
            if device.type == "cuda" and not cuda_has_native_bf16(device):
                raise UserError(f"--approx-precision bf16: {device} has no native bfloat16 (compute capability "
                                "8.0+); use --approx-precision fp32")
        if self.chunk_size < 1:
            raise UserError(f"--chunk-size must be >= 1 (got {self.chunk_size})")
        if self.subset_policy not in SUBSET_POLICIES:
            raise UserError(f"--subset-policy must be one of {', '.join(SUBSET_POLICIES)} (got {self.subset_policy!r})")
        if self.candidate_batch is not None and self.candidate_batch < 1:
            raise UserError(f"--candidate-batch must be >= 1 (got {self.candidate_batch})")

    def identity(self) -> dict:
        """What a saved state must match: an exact run without --approx-check never reads the race's
        settings, so it leaves them out (a state saved before their defaults changed still resumes)."""
        fields = asdict(self)
        if self.selection == "exact" and not self.approx_check:
            for key in RACE_FIELDS:
                fields.pop(key)
        elif self.approx_precision == "fp32":  # states saved before the field existed raced in fp32
            fields.pop("approx_precision")
        return fields

    def race_settings(self):
        from laasp.racing import RaceSettings

        return RaceSettings(self.approx_start_fraction, self.approx_eta, self.approx_confidence, self.approx_precision)
