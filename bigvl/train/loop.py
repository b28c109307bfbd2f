"""The trainer: two-tower contrastive pretraining (CLIP softmax or SigLIP sigmoid).

Read top to bottom: logging → mesh → input → model and state (init by shape) →
checkpoint/resume → update → evaluation → loop. The jitted `train_step` is the only
compiled training code; everything else prepares its inputs or reads its outputs.
"""
from __future__ import annotations

import json
import logging
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from tqdm import tqdm

from bigvl.train import checkpoints as checkpointing

from bigvl.train import run_dir as run_logs
from bigvl.losses.captioning import add_caption_loss, caption_inputs
from bigvl.data.pipeline import make_train_dataset, resolve_paths, scan_shards
from bigvl.data.tokenizer import Tokenizer
from bigvl.inference.encoder import make_encoder
from bigvl.evaluators import run_evals
from bigvl.models.flops import model_flops_per_pair
from bigvl.train.grad_accumulation import accumulated_value_and_grad
from bigvl.parallel.hardware import peak_flops
from bigvl.train.state import load_init_params
from bigvl.train.counters import initial_counters, update_counters, window_mean_loss
from bigvl.train.run_dir import MetricsWriter
from bigvl.models import build_model, count_params
from bigvl.losses.objective import initial_loss_state, needs_patch_embeds, training_loss
from bigvl.train.optimizer import make_optimizer
from bigvl.parallel.mesh import (batch_sharding, check_batch_divisible, host_local_to_global,
                            logical_shardings, make_mesh, rules_from_config)

log = logging.getLogger(__name__)


def dummy_inputs(model_cfg, batch: int = 1) -> tuple[jax.Array, jax.Array]:
    """Zero images uint8 [b,S,S,3] and tokens int32 [b,L] for init and shape inference."""
    size, length = model_cfg.image.image_size, model_cfg.text.context_length
    return jnp.zeros((batch, size, size, 3), jnp.uint8), jnp.zeros((batch, length), jnp.int32)


def make_state_init(config, mesh, rules):
    """Model, optimizer and the sharded state initialiser, built by shape (nothing allocated).

    Returns (model, tx, schedule, init_state(rng) → state, compiled_init (AOT-compiled;
    its output_shardings are the state shardings), num_params). state = {params,
    opt_state, step, skipped_steps[, loss_state]}.
    """
    model = build_model(config.model)
    tx, schedule = make_optimizer(config.optim, config.total_steps)
    images0, tokens0 = dummy_inputs(config.model)
    boxed = jax.eval_shape(lambda rng: model.init(rng, images0, tokens0)["params"], jax.random.key(0))
    param_shardings = logical_shardings(boxed, mesh, rules)

    # Objectives with state between steps (ALIP's EMAs) keep it in state["loss_state"].
    loss_state0 = initial_loss_state(config.loss)
    loss_state_entry = {"loss_state": loss_state0} if loss_state0 else {}

    def init_state(rng):
        params = nn.unbox(model.init(rng, images0, tokens0)["params"])
        params = jax.lax.with_sharding_constraint(params, param_shardings)
        return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32),
                "skipped_steps": jnp.zeros((), jnp.int32), **initial_counters(), **loss_state_entry}

    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        compiled_init = jax.jit(init_state).lower(jax.random.key(config.seed)).compile()
    return model, tx, schedule, init_state, compiled_init, count_params(nn.unbox(boxed))


def make_train_step(config, model, tx, schedule, mesh):
    """The update (state, global batch {image [B,S,S,3], tokens [B,T,L]}) → (state, metrics), unjitted.

    Gradients are those of the loss over the whole global batch; with
    `optim.grad_accum_steps` = K > 1 they are computed in K micro-batches (GradCache: exact,
    see bigvl/train/grad_accumulation.py).
    """
    model_inputs = {"with_patch_embeds": True} if needs_patch_embeds(config.loss) else {}

    def apply_fn(params, batch):
        b, t, length = batch["tokens"].shape  # T texts per image (caption strategy)
        outputs = model.apply({"params": params}, batch["image"], batch["tokens"].reshape(b * t, length),
                              **caption_inputs(batch), **model_inputs)
        if t > 1:
            outputs["text_embeds"] = outputs["text_embeds"].reshape(b, t, -1)
        # stored teacher embeddings (distillation) pass through to the objective
        outputs.update({k: v for k, v in batch.items() if k.startswith("teacher_")})
        return outputs

    def train_step(state, batch):
        def loss_fn(outputs):
            loss, loss_state, loss_metrics = training_loss(outputs, config.loss, mesh, state.get("loss_state", {}))
            loss, loss_metrics = add_caption_loss(loss, loss_metrics, outputs, config.loss)  # CoCa / CLIPS
            return loss, (outputs, loss_state, loss_metrics)

        (loss, (outputs, loss_state, loss_metrics)), grads = accumulated_value_and_grad(
            apply_fn, loss_fn, config.optim.grad_accum_steps)(state["params"], batch)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jax.tree.reduce(
            jnp.logical_and, jax.tree.map(lambda p: jnp.isfinite(p).all(), params))
        if config.nonfinite == "skip":  # keep the last good params and moments
            keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
            params, opt_state = keep(params, state["params"]), keep(opt_state, state["opt_state"])
        skipped = state["skipped_steps"] + (~finite).astype(jnp.int32)
        metrics = {"loss": loss, "lr": schedule(state["step"]), "grad_norm": grad_norm,
                   "logit_scale": outputs["logit_scale"], "finite": finite, "skipped_steps": skipped}
        if "logit_bias" in outputs:
            metrics["logit_bias"] = outputs["logit_bias"]
        new_state = {"params": params, "opt_state": opt_state, "step": state["step"] + 1, "skipped_steps": skipped}
        counters, counter_metrics = update_counters(state, batch, loss, finite, config.log_steps, config.total_steps)
        new_state.update(counters)
        metrics.update(counter_metrics)
        if "loss_state" in state:
            new_state["loss_state"] = keep(loss_state, state["loss_state"]) if config.nonfinite == "skip" \
                else loss_state
        return new_state, {**metrics, **loss_metrics}

    return train_step


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
    """Trains (resuming from `workdir` if it holds checkpoints); returns the final eval metrics."""
    # ------------------------------------------------------------------ logging
    is_host0 = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    if is_host0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    # ------------------------------------------------------------------ mesh
    mesh = make_mesh(config.mesh)
    rules = rules_from_config(config.sharding_rules)
    check_batch_divisible(config.batch_size, mesh)
    log.info("mesh %s over %d devices", dict(mesh.shape), mesh.devices.size)

    # ------------------------------------------------------------------ input
    tokenizer = Tokenizer(config.data.tokenizer)
    if tokenizer.vocab_size > config.model.text.vocab_size:
        raise ValueError(f"tokenizer {config.data.tokenizer} has {tokenizer.vocab_size} pieces but "
                         f"model.text.vocab_size is {config.model.text.vocab_size}")
    shards = scan_shards(resolve_paths(config.data.train_paths))  # unreadable shards: warned, left out
    data_iter = iter(make_train_dataset(config, jax.process_index(), jax.process_count(), shards))
    batch_shardings = batch_sharding(mesh)

    # ------------------------------------------------------------------ model and state
    model, tx, schedule, init_state, compiled_init, num_params = make_state_init(config, mesh, rules)
    rng = jax.random.key(config.seed)
    state_shardings = compiled_init.output_shardings
    log.info("model: %.2fM params", num_params / 1e6)

    # ------------------------------------------------------------------ checkpoint / resume
    manager = checkpointing.make_manager(workdir, config.keep_ckpts)
    abstract = checkpointing.abstract_with_shardings(jax.eval_shape(init_state, rng), state_shardings)
    state = checkpointing.restore_latest(manager, abstract, data_iter)
    if state is None:
        state = compiled_init(rng)
        if config.init.workdir:  # fine-tuning: params from another run (Adam moments start at 0)
            state["params"] = load_init_params(config.init, state["params"])
    start_step = int(state["step"])
    # Lines a killed run wrote after this checkpoint move to *.superseded.* files: the
    # resumed run writes them again, and TensorBoard drops its events past start_step.
    run_logs.supersede_logs(workdir, start_step, jax.process_index(), jax.process_count())
    writer = MetricsWriter(workdir, enabled=is_host0, purge_step=start_step + 1)
    ids_log = run_logs.ExampleIdsLog(workdir, jax.process_index(), jax.process_count(),
                                     enabled=config.log_example_ids)

    # ------------------------------------------------------------------ update
    train_step = make_train_step(config, model, tx, schedule, mesh)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        step_fn = jax.jit(train_step, in_shardings=(state_shardings, batch_shardings),
                          out_shardings=(state_shardings, None), donate_argnums=(0,))

    # ------------------------------------------------------------------ evaluation
    encoder = make_encoder(model, state["params"], tokenizer, config.model, mesh, rules,
                           config.evals.batch_size)

    def evaluate(step: int, params) -> dict[str, float]:
        t0 = time.perf_counter()
        metrics = run_evals(encoder.replace(params=params), config.evals)
        if metrics:
            writer.write(step, {**metrics, "eval_time_s": time.perf_counter() - t0})
        return metrics

    # ------------------------------------------------------------------ loop
    flops_per_pair = model_flops_per_pair(config.model)["train"]
    peak = peak_flops()
    progress = tqdm(total=config.total_steps, initial=start_step, desc="train", unit="step",
                    disable=not (config.progress_bar and is_host0), dynamic_ncols=True)
    eval_metrics, timer_step, timer, in_flight = {}, None, None, None

    def check_finite(finite, step):  # waits for `step` to finish
        if not bool(finite) and config.nonfinite == "stop":
            manager.wait_until_finished()
            raise FloatingPointError(
                f"step {step}: loss, gradient or updated params not finite; stopping (config "
                f"nonfinite='stop'); newest checkpoint: step {manager.latest_step()}")

    with checkpointing.PreemptionWatcher() as preemption:  # SIGTERM: save, exit 0
        for step in range(start_step + 1, config.total_steps + 1):
            local = next(data_iter)
            ids_log.write(step, local.pop("index"))  # the record ids this step consumes
            with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
                state, metrics = step_fn(state, host_local_to_global(local, mesh))
            # Keep one step in flight (the next batch loads while it runs) and advance the
            # bar when the previous one has finished, so the bar and its ETA are honest.
            if in_flight is not None:
                check_finite(in_flight, step - 1)
            in_flight = finite = metrics["finite"]
            progress.update(1)

            if timer is None:  # the first step compiles: time from its end
                jax.block_until_ready(metrics)
                timer_step, timer = step, time.perf_counter()
            if step % config.log_steps == 0 or step == config.total_steps:
                check_finite(finite, step)
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items() if k != "finite"}
                # loss: the mean over the finite steps since the last log line (this one: loss_last)
                metrics["loss_last"] = metrics["loss"]
                metrics["loss"] = window_mean_loss(metrics)
                if shards.unreadable:  # left out at start-up (warned, named)
                    metrics["data_unreadable_shards"] = float(len(shards.unreadable))
                elapsed, steps = time.perf_counter() - timer, step - timer_step
                if steps > 0:
                    pairs_per_s = steps * config.batch_size / elapsed
                    metrics.update(step_time_s=elapsed / steps, pairs_per_s=pairs_per_s,
                                   model_tflops_per_s=pairs_per_s * flops_per_pair / 1e12)
                    if peak:
                        metrics["mfu"] = pairs_per_s * flops_per_pair / (peak * mesh.devices.size)
                progress.set_postfix(loss=f"{metrics['loss']:.3f}")
                writer.write(step, metrics, console=step % (config.log_steps * 5) == 0
                             or step == config.total_steps)
                timer_step, timer = step, time.perf_counter()

            if step % config.ckpt_steps == 0 or step == config.total_steps:
                check_finite(finite, step)  # never save params of a non-finite step
                checkpointing.save(manager, step, state, data_iter, force=step == config.total_steps)
            if config.eval_steps and step % config.eval_steps == 0 and step != config.total_steps:
                eval_metrics = evaluate(step, state["params"])
                timer = None
            if preemption.reached(manager, step):
                checkpointing.save(manager, step, state, data_iter, force=True)
                manager.wait_until_finished()
                log.warning("preempted: saved step %d, exiting", step)
                progress.close()
                writer.close()
                ids_log.close()
                return eval_metrics
    progress.close()

    final_step = int(state["step"])
    eval_metrics = evaluate(final_step, state["params"])
    manager.wait_until_finished()
    writer.close()
    ids_log.close()
    if is_host0:
        with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
            json.dump({"step": final_step, "num_params": num_params, **eval_metrics}, f, indent=2)
    return eval_metrics
