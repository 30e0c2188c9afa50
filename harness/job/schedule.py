"""The one schedule every pruner runs in, for a fair table: train to ``prune_epoch``, prune to
the FLOPs target (a pruner may train recovery epochs through ``ctx.train``), top up to a
matched epoch budget, then train to the total epoch count with a fresh optimizer, and let the
pruner finish (e.g. remove soft-pruned filters). The pruner's per-step and per-epoch hooks
(`harness.prune.pruner.Pruner`) run in every epoch it trains."""
from __future__ import annotations

from harness.prune.pruner import PRUNERS, method_block

# Phases a pruned run trains after its last structural change (soft pruners only mask in them and
# remove the masked filters after the last epoch): the shapes they train are final.
FINAL_SHAPE_PHASES = ("budget", "finetune")


def run_pruning_schedule(ctx) -> None:
    """train -> prune (pruner-specific, may recover) -> top up to the epoch budget -> finetune
    -> the pruner's end (``on_train_end``).

    Each stage is resumable: epochs already in the history are not trained again, a pruner
    that saved its progress in ``ctx.pruner_state`` continues from there, and the pruner's
    own `state_dict` is saved with every checkpoint and restored before it starts again.
    """
    cfg = ctx.config
    pcfg = cfg.pruner_config
    pruner = ctx.attach_pruner(PRUNERS.get(cfg.pruner)(pcfg))
    pruner.on_train_start(ctx)
    if ctx.stage == "train":
        ctx.train(range(ctx.epochs_in_phase("train"), pcfg.prune_epoch), "train")
        # The unpruned network's accuracy when pruning starts. (The unpruned *baseline* of a
        # table is a separate `train` run to the full epoch count; this is not it.)
        if pcfg.prune_epoch > 0 or cfg.init_checkpoint or cfg.weights:
            ctx.pre_prune = ctx.engine.evaluate(ctx.model)
        ctx.stage = "prune"
        ctx.checkpoint()
    if ctx.stage == "prune":
        ctx.pruner_fields = pruner.prune(ctx)
        ctx.pruner_state = None
        ctx.stage = "top_up"
        ctx.checkpoint()
    finetune_epochs = cfg.epochs - pcfg.prune_epoch
    if ctx.stage == "top_up":
        top_up = _top_up_epochs(ctx, finetune_epochs)
        if top_up > 0:
            # Extra epochs to match another run's total budget, trained the way LAASP recovers:
            # at the learning rate of prune_epoch, right after pruning.
            done = ctx.epochs_in_phase("budget")
            ctx.train([pcfg.prune_epoch] * (top_up - done), "budget", fixed_lr=cfg.optim.lr_at(pcfg.prune_epoch),
                      fresh_optimizer=done == 0)
        ctx.stage = "finetune"
        ctx.state.optimizer = None  # pruning replaced the parameters: a fresh optimizer
        ctx.checkpoint()
    if ctx.stage == "finetune":
        done = ctx.epochs_in_phase("finetune")
        ctx.train(range(pcfg.prune_epoch + done, cfg.epochs), "finetune")
    # No checkpoint of its own: an interrupted end reruns from the last epoch's state.
    ctx.pruner_fields.update(pruner.on_train_end(ctx) or {})
    ctx.pruner_fields["method"] = method_block(cfg.pruner, pruner)


def _top_up_epochs(ctx, finetune_epochs: int) -> int:
    """Epochs to add so the run trains exactly ``epoch_budget`` epochs in all."""
    budget = ctx.config.epoch_budget
    if budget is None:
        return 0
    planned = ctx.state.epochs_trained - ctx.epochs_in_phase("budget") + finetune_epochs
    if planned > budget:
        print(f"note: this run trains {planned} epochs, more than --epoch-budget {budget}; nothing added")
    return max(0, budget - planned)


def run_unpruned_schedule(ctx) -> None:
    """train, with an epoch budget's extra epochs (``budget`` phase) at ``budget_epoch``.

    The extra epochs sit where a pruned run of the same schedule trains its own (right after
    its prune epoch, at that epoch's learning rate), so an unpruned baseline given its pruned
    twins' budget sees the same learning rates as they do. Nothing is pruned, so the optimizer
    carries on. Resumable like the pruned schedule: epochs in the history are not trained again.
    """
    cfg = ctx.config
    extra = 0 if cfg.epoch_budget is None else cfg.epoch_budget - cfg.epochs
    at = cfg.epochs if cfg.budget_epoch is None else cfg.budget_epoch
    trained = ctx.epochs_in_phase("train")
    if extra > 0:
        ctx.train(range(min(trained, at), at), "train")
        ctx.train([at] * (extra - ctx.epochs_in_phase("budget")), "budget")
    ctx.train(range(max(trained, at) if extra > 0 else trained, cfg.epochs), "train")
