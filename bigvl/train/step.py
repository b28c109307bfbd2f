"""The update: one function, jitted once by the loop, from (state, global batch) to (state, metrics)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from bigvl.models.lora import LoraModel
from bigvl.train.freeze import stop_frozen_gradients
from bigvl.train.grad_accumulation import accumulated_value_and_grad
from bigvl.train.optimizer import clamp_log_logit_scale
from bigvl.train.state import TrainSetup, TrainState, next_state
from bigvl.train.teacher import TeacherStage


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
    def model_apply(step):
        """(params, batch) → outputs, the function differentiated. Frozen params (optim.frozen /
        trainable) are constants inside it: a locked tower runs forward only, frozen kernels get
        no weight gradient. LoRA's adapter dropout draws from (seed, step)."""
        model = setup.model
        if isinstance(model, LoraModel) and model.spec.dropout > 0:
            model = model.with_dropout_rng(jax.random.fold_in(jax.random.key(config.seed), step))
        return lambda params, batch: objective.model_outputs(model, stop_frozen_gradients(params, config.optim), batch)

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

        (loss, (outputs, loss_state, terms)), grads = accumulated_value_and_grad(
            model_apply(state["step"]), loss_fn, config.optim.grad_accum_steps)(state["params"], batch)
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
