"""Recovery training between pruning steps: LAASP's rule, shared by LAASP (`laasp.schedule`) and
the iterative schedule of the one-shot baselines (`baselines.iterative`), so the control recovers
at exactly the FLOPs points LAASP would.

The rule (LAASP.md): whenever the FLOPs reduction has grown by ``recover_flop`` since the last
recovery, train ``recover_epoch`` epochs with a fresh SGD optimizer, the k-th at the schedule's
learning rate of epoch ``prune_epoch + k`` as the authors' scripts do (or, with ``recover_lr:
prune_epoch``, all at the rate of ``prune_epoch``). These epochs come on top of the schedule and
are counted in the record.

The bookkeeping (``last_recovery``, ``recoveries``, ``recover_left``) lives in the pruner's own
progress dict, which the caller keeps in ``ctx.pruner_state``: every recovery epoch's checkpoint
saves it, so an interrupted recovery resumes at the epoch it was cut in.
"""
from __future__ import annotations

from typing import Any

from harness.errors import UserError

# Learning rate of recovery epochs. "schedule": the k-th epoch of each recovery at the schedule's
# rate for epoch prune_epoch + k, as the authors' scripts do (their recovery calls their training
# loop for epochs prune_epoch .. prune_epoch + recover_epoch - 1, setting the rate per epoch);
# "prune_epoch": every recovery epoch at the rate of prune_epoch, this harness's rule before
# issue 13 (records without recover_lr were made with it). They differ only when a recovery
# crosses a milestone.
RECOVER_LR_POLICIES = ("schedule", "prune_epoch")


def validate_recovery(recover_epoch: int, recover_flop: float, recover_lr: str) -> None:
    """The recovery settings' checks (UserError naming the flag)."""
    if recover_epoch < 0:
        raise UserError(f"--recover-epoch must be >= 0 (got {recover_epoch})")
    if not 0 < recover_flop <= 1:
        raise UserError(f"--recover-flop must be in (0, 1] (got {recover_flop})")
    if recover_lr not in RECOVER_LR_POLICIES:
        raise UserError(f"--recover-lr must be one of {', '.join(RECOVER_LR_POLICIES)} (got {recover_lr!r})")


def recovery_due(reduction: float, last_recovery: float, recover_flop: float, recover_epoch: int) -> bool:
    """Whether a step that brought the FLOPs reduction to ``reduction`` starts a recovery."""
    return recover_epoch > 0 and reduction - last_recovery >= recover_flop - 1e-12


class Recovery:
    """The recovery rule and its epochs for one pruning loop. ``config`` has ``prune_epoch``,
    ``recover_epoch``, ``recover_flop`` and ``recover_lr``; ``state`` is the loop's progress dict
    (kept in ``ctx.pruner_state``), which gains the keys of `initial_state` if it lacks them."""

    def __init__(self, ctx, config: Any, state: dict[str, Any]):
        self.ctx, self.config, self.state = ctx, config, state
        for key, value in self.initial_state().items():
            state.setdefault(key, value)

    @staticmethod
    def initial_state() -> dict[str, Any]:
        return {"last_recovery": 0.0, "recoveries": 0, "recover_left": 0}

    @property
    def count(self) -> int:
        """Recoveries started so far."""
        return self.state["recoveries"]

    def after_step(self, reduction: float) -> bool:
        """Apply the rule after a step; True when it starts a recovery (trained by `run`)."""
        cfg, state = self.config, self.state
        if not recovery_due(reduction, state["last_recovery"], cfg.recover_flop, cfg.recover_epoch):
            return False
        state["last_recovery"] = reduction
        state["recoveries"] += 1
        state["recover_left"] = cfg.recover_epoch
        return True

    def run(self) -> None:
        """Train the recovery epochs still due (all of a new recovery, or the rest of one an
        interruption cut short); each epoch's checkpoint saves the progress."""
        cfg, state, ctx = self.config, self.state, self.ctx
        while state["recover_left"] > 0:
            k = cfg.recover_epoch - state["recover_left"]  # this epoch's place in its recovery
            state["recover_left"] -= 1
            ctx.pruner_state = state
            at = cfg.prune_epoch + k if cfg.recover_lr == "schedule" else cfg.prune_epoch
            # each recovery starts a new SGD optimizer
            ctx.train([at], "recover", fixed_lr=ctx.config.optim.lr_at(at), fresh_optimizer=k == 0)
