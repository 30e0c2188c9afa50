"""`JobConfig`: everything one run is, typed and validated once (the CLI and sweeps build it
through `harness.job.options`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.data import DataConfig
from harness.errors import UserError
from harness.job.records import portable_path, read_json, to_jsonable
from harness.models import MODELS
from harness.models.pretrained import is_hub, resolve_weights
from harness.train.device import PRECISIONS
from harness.train.engine import OptimConfig


@dataclass(frozen=True)
class JobConfig:
    model: str
    data: DataConfig
    optim: OptimConfig
    epochs: int
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (harness.train.device)
    deterministic: bool = False  # CUDA: deterministic kernels, no autotuning
    compile: bool = False  # torch.compile training where shapes no longer change (harness.train.compiled)
    workers: int = 1  # data-parallel processes (harness.job.launch); optim.batch_size is the global batch
    out: str | None = None
    progress: bool = True
    pruner: str | None = None
    pruner_config: Any = None  # the pruner's own typed config (see harness.prune.pruner)
    init_checkpoint: str | None = None  # three-stage mode: prune this trained network at once
    weights: str | None = None  # pretrained start: a state_dict file or "torchvision[:NAME]" (models.pretrained)
    epoch_budget: int | None = None  # total epochs to train, recovery included (to match a LAASP run)
    budget_epoch: int | None = None  # unpruned runs with a budget: the schedule epoch of the extra epochs
    scratch: Any = None  # harness.job.scratch.ScratchSpec: another run's architecture, trained from scratch

    def validate(self) -> None:
        MODELS.get(self.model)  # unknown model: UserError listing the registered ones
        self.data.validate()
        self.optim.validate()
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        if self.epochs < 1:
            raise UserError(f"--epochs must be >= 1 (got {self.epochs})")
        if self.workers < 1:
            raise UserError(f"--workers must be >= 1 (got {self.workers}): it is the number of data-parallel "
                            "processes (1 trains in this process; DataLoader workers are --loader-workers)")
        if self.optim.batch_size % self.workers:
            raise UserError(f"--batch-size {self.optim.batch_size} does not split evenly across --workers "
                            f"{self.workers}: each process trains on batch_size / workers images per step; "
                            "pass a batch size that is a multiple of --workers")
        if self.init_checkpoint and not Path(self.init_checkpoint).is_file():  # a sweep checks every trial up front
            what = "is a folder" if Path(self.init_checkpoint).is_dir() else "no such file"
            raise UserError(f"--from-checkpoint {self.init_checkpoint}: {what}; pass the checkpoint.pt written by a "
                            "run's --out folder")
        if self.init_checkpoint and self.pruner is None:
            raise UserError("--from-checkpoint needs a pruner; use `run --pruner ...`")
        if self.weights:
            if self.init_checkpoint:
                raise UserError("--weights and --from-checkpoint both give the starting network; pass one")
            resolve_weights(self.weights, self.model)  # a missing file or hub entry: refused before any data
        if self.budget_epoch is not None:
            if self.pruner is not None:
                raise UserError("--budget-epoch is for unpruned runs; a pruned run trains its extra epochs right "
                                "after pruning (--prune-epoch)")
            if self.epoch_budget is None:
                raise UserError("--budget-epoch places the extra epochs of --epoch-budget/--match-epochs; give one")
            if not 0 <= self.budget_epoch <= self.epochs:
                raise UserError(f"--budget-epoch must be in [0, --epochs {self.epochs}] (got {self.budget_epoch})")
        if self.pruner is not None:
            from harness.prune.plugins import load_builtin_pruners
            from harness.prune.pruner import PRUNERS

            load_builtin_pruners()
            PRUNERS.get(self.pruner)  # unknown pruner: UserError listing the registered ones
            if self.pruner_config is None:
                raise UserError(f"pruner {self.pruner} needs its config (--target-flops at least)")
        if self.pruner_config is not None:
            self.pruner_config.validate(self)
            if self.init_checkpoint and self.pruner_config.prune_epoch != 0:
                raise UserError("--from-checkpoint prunes the loaded network at once; use --prune-epoch 0 (or omit it)")
        if self.scratch is not None:
            if self.weights or self.init_checkpoint:  # a scratch control starts from random weights by definition
                raise UserError("a scratch run trains from random initialisation; drop --weights / --from-checkpoint")
            if self.pruner is not None or self.epoch_budget is not None:
                raise UserError("a scratch run trains the source's architecture unpruned for the epochs its budget "
                                "sets; drop --pruner / --epoch-budget")
            if self.scratch.epochs != self.epochs:
                raise UserError(f"a scratch-{self.scratch.budget} run trains {self.scratch.epochs} epochs, not "
                                f"--epochs {self.epochs}")
        if self.epoch_budget is not None and self.epoch_budget < self.epochs:
            raise UserError(f"--epoch-budget {self.epoch_budget} is below --epochs {self.epochs}; "
                            "the budget counts every epoch trained, so it must be >= --epochs")

    def portable(self) -> "JobConfig":
        """The config as a record holds it: its output folder relative to itself (the record sits
        in it), what it reads relative to the repository; never a path of this machine."""
        weights = self.weights if is_hub(self.weights) else portable_path(self.weights)
        return replace(self, out=portable_path(self.out, self.out), init_checkpoint=portable_path(self.init_checkpoint),
                       weights=weights,
                       data=replace(self.data, data_root=portable_path(self.data.data_root)))

    def identity(self) -> dict[str, Any]:
        """What must match for a saved state to be resumed (output and display settings may differ)."""
        d = to_jsonable(asdict(self))
        # where a run computes (device, how many processes) does not change what it computes: a run
        # started on 2 processes may resume on 1 (README, Data-parallel runs)
        for key in ("out", "progress", "device", "workers"):
            d.pop(key, None)
        d["data"].pop("loader_workers", None)  # batches do not depend on the DataLoader's worker count either
        for late in ("budget_epoch", "weights"):  # added later: states saved before them still resume
            if d.get(late) is None:
                d.pop(late, None)
        if hasattr(self.pruner_config, "identity"):  # a config may leave out settings it does not read
            d["pruner_config"] = to_jsonable(self.pruner_config.identity())
        if d.get("scratch") is None:  # likewise
            d.pop("scratch", None)
        else:  # where the source lies may change (a moved sweep folder); its architecture may not
            d["scratch"].pop("source", None)
        return d


def prune_epoch_of_record(path: str | Path) -> int | None:
    """The prune epoch a pruned run's record.json was made with (None for an unpruned one)."""
    try:
        value = ((read_json(path).get("config") or {}).get("pruner_config") or {}).get("prune_epoch")
    except (OSError, ValueError, AttributeError):
        return None
    return None if value is None else int(value)


def epochs_of_record(path: str | Path) -> int:
    """``epochs_trained`` of a finished run's record.json (for --match-epochs)."""
    try:
        return int(read_json(path)["epochs_trained"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--match-epochs {path}: not a readable record.json with epochs_trained ({exc})") from exc
