"""The update: one function, jitted once by the loop, from (state, global batch) to (state, metrics)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from bigvl.models.lora import LoraModel
from bigvl.train.freeze import merge_trainable, split_trainable
from bigvl.train.grad_accumulation import accumulated_value_and_grad
from bigvl.train.optimizer import clamp_log_logit_scale
from bigvl.train.state import TrainSetup, TrainState, next_state
from bigvl.train.teacher import TeacherStage

MICRO_ROW = "lora_dropout_row"  # int32 [B]: the row index, added to the batch when LoRA dropout is on


def make_train_step(config, setup: TrainSetup):
    """The update (state, global batch) → (state, metrics), unjitted.

    batch: image uint8 [B,S,S,3], tokens int32 [B,T,L], skipped_records int32 [B], plus what
    the objective reads (target_tokens, teacher_*). Gradients are those of the loss over the
    whole global batch; with `optim.grad_accum_steps` = K > 1 they are computed in K
    micro-batches (GradCache: exact, see bigvl/train/grad_accumulation.py).
    Metrics: loss, the objective's named terms, lr, grad_norm, logit_scale (logit_bias),
    finite, and the state's counters.
    """
    objective, tx, schedule = setup.objective, setup.tx, setup.schedule
    stage = TeacherStage.from_config(config)  # SigLIP 2's EMA-teacher stage (bigvl/train/teacher.py), or None
    lora_dropout = isinstance(setup.model, LoraModel) and setup.model.spec.dropout > 0

    def model_apply(step, frozen):
        """(trainable params, batch) → outputs, the function differentiated. Frozen params
        (optim.frozen / trainable) are constants closed over, not arguments: a locked tower runs
        forward only, frozen kernels get no weight gradient and the gradient tree holds the
        trainable leaves alone. LoRA's adapter dropout draws from (seed, step, micro-batch index);
        flax folds in each adapter's module path and, under nn.scan, the layer."""
        def apply(trainable, batch):
            model = setup.model
            if lora_dropout:  # row k of micro-batch k is k (split_micro_batches): one key in both GradCache passes
                key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), step), batch[MICRO_ROW][0])
                model = model.with_dropout_rng(key)
            return objective.model_outputs(model, merge_trainable(trainable, frozen), batch)
        return apply

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        if stage is None:
            return update(state, batch, False)
        return jax.lax.cond(state["step"] >= stage.start, lambda s, b: update(s, b, True),
                            lambda s, b: update(s, b, False), state, batch)

    def update(state: TrainState, batch: dict, with_teacher: bool) -> tuple[TrainState, dict]:
        if with_teacher:  # the teacher's targets on the global view, and the patch mask
            batch = {**batch, **stage.targets(objective, setup.model, state["teacher"], batch, state["step"])}

        def loss_fn(outputs, full_batch):
            with jax.named_scope("loss"):  # names in profiles (benchmarks.profile_step)
                loss, terms, loss_state = objective(outputs, full_batch, state.get("loss_state", {}))
            return loss, (outputs, loss_state, terms)

        trainable, frozen = split_trainable(state["params"], config.optim)
        if lora_dropout:
            batch = {**batch, MICRO_ROW: jnp.arange(batch["skipped_records"].shape[0], dtype=jnp.int32)}
        (loss, (outputs, loss_state, terms)), grads = accumulated_value_and_grad(
            model_apply(state["step"], frozen), loss_fn, config.optim.grad_accum_steps)(trainable, batch)
        # the optimizer's multi_transform takes every leaf: zeros for the frozen ones (set_to_zero drops them)
        grads = merge_trainable(grads, jax.tree.map(jnp.zeros_like, frozen))
        with jax.named_scope("optimizer"):
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
            params = clamp_log_logit_scale(optax.apply_updates(state["params"], updates),
                                           config.model.max_logit_scale)
            grad_norm = optax.tree.norm(grads)
            finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jax.tree.reduce(
                jnp.logical_and, jax.tree.map(lambda p: jnp.isfinite(p).all(), params))
        new_state, counters = next_state(
            state, params=params, opt_state=opt_state, loss_state=loss_state, loss=loss, finite=finite,
            skipped_records=batch["skipped_records"], keep_last_good=config.nonfinite == "skip",
            log_steps=config.log_steps, total_steps=config.total_steps,
            teacher=None if stage is None else stage.next_teacher(state["teacher"], params, with_teacher))
        metrics = {"loss": loss, "lr": schedule(state["step"]), "grad_norm": grad_norm,
                   "logit_scale": outputs["logit_scale"], "finite": finite, **counters, **terms}
        if "logit_bias" in outputs:
            metrics["logit_bias"] = outputs["logit_bias"]
        return new_state, metrics

    return train_step
