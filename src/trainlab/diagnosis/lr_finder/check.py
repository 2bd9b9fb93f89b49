"""The doctor's ``lr_range`` check: the range test over the context's seeds, its figure and
its verdict on the recipe's own learning rate (lecture 002, step 4)."""

from __future__ import annotations

from trainlab.diagnosis.checks import CHECK_REGISTRY, Context
from trainlab.diagnosis.findings import Finding


@CHECK_REGISTRY.register("lr_range")
def _check(ctx: Context) -> Finding:
    """The lr range test over three seeds and lecture 002's 100-iteration rule (step 4)."""
    from trainlab.diagnosis.lr_finder import check_lr, lr_range_test, plot_lr_sweep

    if ctx.parts.needs_closure:
        return Finding(
            "lr_range",
            "ok",
            f"not applicable: {ctx.recipe.optimizer.name} is a full-batch optimiser whose line "
            "search sets its own step; the range test sweeps the lr of mini-batch steps",
            values={"applicable": False},
        )
    sweep = lr_range_test(ctx.recipe, seeds=ctx.seeds)
    plot_lr_sweep(sweep, ctx.out / "lr_range.png")
    return check_lr(sweep, figure="lr_range.png", current_lr=ctx.parts.base_lr)
