"""The trainer: contrastive (CLIP / SigLIP) and captioning (CoCa / CLIPS) pretraining.

Read top to bottom: logging → mesh → input → model and state (init by shape) →
checkpoint/resume → update → evaluation → loop. The jitted `train_step`
(bigvl/train/step.py) is the only compiled training code; everything else prepares its
inputs or reads its outputs.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time

import flax.linen as nn
import jax
from tqdm import tqdm

from bigvl.data.pipeline import Shards, make_train_dataset, resolve_paths, scan_shards
from bigvl.data.tokenizer import Tokenizer
from bigvl.evaluators import run_evals
from bigvl.inference import frozen_store
from bigvl.inference.encoder import make_encoder
from bigvl.models.flops import model_flops_per_pair
from bigvl.parallel.hardware import peak_flops
from bigvl.parallel.mesh import (
    batch_sharding,
    check_batch_divisible,
    host_local_to_global,
    make_mesh,
    rules_from_config,
)
from bigvl.parallel.storage import run_path, write_text
from bigvl.train import checkpoints
from bigvl.train.compile_count import CountedTraces
from bigvl.train.example_ids import ExampleIdsLog
from bigvl.train.freeze import freezing_enabled, split_trainable
from bigvl.train.init_check import check_init_architecture
from bigvl.train.metrics_log import MetricsWriter, finished_metrics
from bigvl.train.state import load_init_params, make_train_setup, window_mean_loss
from bigvl.train.step import make_train_step
from bigvl.train.supersede import supersede_logs
from bigvl.train.throughput import Throughput

log = logging.getLogger(__name__)


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
    """Trains (resuming from `workdir` if it holds checkpoints); returns the final eval metrics."""
    # ------------------------------------------------------------------ logging
    is_host0 = jax.process_index() == 0
    run_path(workdir).mkdir(parents=True, exist_ok=True)  # a local directory or a bucket (gs://...)
    if is_host0:
        write_text(run_path(workdir) / "config.json", config.to_json_best_effort(indent=2))

    # ------------------------------------------------------------------ mesh
    mesh = make_mesh(config.mesh)
    rules = rules_from_config(config.sharding_rules)
    check_batch_divisible(config.batch_size, mesh)
    log.info("mesh %s over %d devices", dict(mesh.shape), mesh.devices.size)
    if config.init.workdir:  # fine-tuning: the model must compute what that run computed (before compiling)
        check_init_architecture(config.model, config.init.workdir)

    # ------------------------------------------------------------------ input
    tokenizer = Tokenizer.for_model(config.data.tokenizer, config.model.text)  # ValueError naming a mismatched key
    shards = (scan_shards(resolve_paths(config.data.train_paths))  # unreadable shards: warned, left out
              if config.data.source == "array_record" and not config.data.sources  # data.sources: the pipeline's
              else Shards([], [], []))  # tfds: bigvl/data/tfds_source.py
    data_iter = iter(make_train_dataset(config, jax.process_index(), jax.process_count(), shards))

    # ------------------------------------------------------------------ model and state
    setup = make_train_setup(config, mesh, rules)
    rng = jax.random.key(config.seed)
    log.info("model: %.2fM params", setup.num_params / 1e6)

    # ------------------------------------------------------------------ checkpoint / resume
    manager = checkpoints.make_manager(workdir, config.keep_ckpts)
    abstract = checkpoints.abstract_with_shardings(jax.eval_shape(setup.init, rng), setup.state_shardings)
    frozen_spec = frozen_store.read_spec(workdir) if freezing_enabled(config.optim) else None
    if frozen_spec is not None:  # frozen params live once in WORKDIR/frozen_params, the steps hold the rest
        stepped, frozen = split_trainable(abstract["params"], config.optim)
        frozen_store.check_same_leaves(frozen_spec, frozen_store.frozen_leaves(frozen), workdir)  # so: the store's split
        state = checkpoints.restore_latest(manager, {**abstract, "params": stepped}, data_iter, config.batch_size)
        if state is not None:
            state["params"] = frozen_store.merge(state["params"], frozen_store.restore_frozen(workdir, frozen))
    else:  # nothing frozen, a fresh run, or a run written before the store (whole params in every step)
        state = checkpoints.restore_latest(manager, abstract, data_iter, config.batch_size)
    frozen_stored = frozen_spec is not None  # steps leave the frozen params out (a run before the store: whole)
    store_frozen = freezing_enabled(config.optim) and not frozen_stored and not manager.all_steps()
    if state is None:
        state = setup.compiled_init(rng)
        if config.init.workdir:  # fine-tuning: params from another run (Adam moments start at 0)
            state["params"] = load_init_params(config.init, state["params"], mesh)
    start_step = int(state["step"])
    if start_step == config.total_steps and (done := finished_metrics(workdir, start_step)) is not None:
        log.info("%s finished at step %d already: its final evaluation is in final_metrics.json", workdir, start_step)
        return done
    # Lines a killed run wrote after this checkpoint move to *.superseded.* files: the
    # resumed run writes them again (the final evaluation too, when only it is left), and
    # TensorBoard drops its events past start_step.
    supersede_logs(workdir, start_step, jax.process_index(), jax.process_count(),
                   evals_at_step=start_step == config.total_steps)

    # ------------------------------------------------------------------ update
    traces = CountedTraces(make_train_step(config, setup))  # one compile per batch shape (NaFlex: per length)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        step_fn = jax.jit(traces, in_shardings=(setup.state_shardings, batch_sharding(mesh)),
                          out_shardings=(setup.state_shardings, None), donate_argnums=(0,))

    with contextlib.ExitStack() as closing:
        writer = MetricsWriter(workdir, enabled=is_host0, purge_step=start_step + 1)
        closing.callback(writer.close)
        ids_log = ExampleIdsLog(workdir, jax.process_index(), jax.process_count(),
                                enabled=config.log_example_ids)
        closing.callback(ids_log.close)
        closing.callback(manager.wait_until_finished)  # runs first: checkpoints land before the logs close

        def save_checkpoint(step: int, force: bool) -> None:
            """The state and iterator at `step`; frozen params (optim.frozen / trainable) are written once, to
            WORKDIR/frozen_params before the first step, and left out of every step (None in their place)."""
            nonlocal store_frozen, frozen_stored
            saved = state
            if store_frozen or frozen_stored:
                trainable, frozen = split_trainable(state["params"], config.optim)
                if store_frozen:
                    frozen_store.save_frozen(workdir, frozen, config.optim)
                    store_frozen, frozen_stored = False, True
                saved = {**state, "params": trainable}
            checkpoints.save(manager, step, saved, data_iter, force=force, batch_size=config.batch_size)

        # -------------------------------------------------------------- evaluation
        encoder = make_encoder(setup.model, state["params"], tokenizer, config.model, mesh, rules,
                               config.evals.batch_size)

        def evaluate(step: int, params) -> dict[str, float]:
            t0 = time.perf_counter()
            metrics = run_evals(encoder.replace(params=params), config.evals)
            if metrics:
                writer.write(step, {**metrics, "eval_time_s": time.perf_counter() - t0})
            return metrics

        # -------------------------------------------------------------- loop
        flops = model_flops_per_pair(config.model, setup.objective.num_texts + setup.objective.negatives,
                                     caption_target=bool(config.data.target_field))
        throughput = Throughput(config.batch_size, flops["train"], peak_flops(), mesh.devices.size)
        progress = tqdm(total=config.total_steps, initial=start_step, desc="train", unit="step",
                        disable=not (config.progress_bar and is_host0), dynamic_ncols=True)
        closing.callback(progress.close)
        preemption = closing.enter_context(checkpoints.PreemptionWatcher())  # SIGTERM: save, exit 0
        eval_metrics, in_flight = {}, None

        def check_finite(finite, step):  # waits for `step` to finish
            if not bool(finite) and config.nonfinite == "stop":
                manager.wait_until_finished()
                raise FloatingPointError(
                    f"step {step}: loss, gradient or updated params not finite; stopping (config "
                    f"nonfinite='stop'); newest checkpoint: step {manager.latest_step()}")

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
            if not throughput.started:  # the first step compiles: time from its end
                throughput.restart(step, wait_for=metrics)

            if step % config.log_steps == 0 or step == config.total_steps:
                check_finite(finite, step)
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items() if k != "finite"}
                # loss: the mean over the finite steps since the last log line (this one: loss_last)
                metrics["loss_last"] = metrics["loss"]
                metrics["loss"] = window_mean_loss(metrics)
                if shards.unreadable:  # left out at start-up (warned, named)
                    metrics["data_unreadable_shards"] = float(len(shards.unreadable))
                metrics.update(throughput.measure(step))
                metrics["step_compiles"] = float(traces.count)
                progress.set_postfix(loss=f"{metrics['loss']:.3f}")
                writer.write(step, metrics, console=step % (config.log_steps * 5) == 0 or step == config.total_steps)
                throughput.restart(step)

            if step % config.ckpt_steps == 0 or step == config.total_steps:
                check_finite(finite, step)  # never save params of a non-finite step
                writer.flush()  # logs in a bucket: the lines of the steps a checkpoint holds are stored first
                ids_log.flush()
                save_checkpoint(step, force=step == config.total_steps)
            if config.eval_steps and step % config.eval_steps == 0 and step != config.total_steps:
                eval_metrics = evaluate(step, state["params"])
                throughput.restart(step)
            if preemption.reached(manager, step):
                writer.flush()
                ids_log.flush()
                save_checkpoint(step, force=True)
                log.warning("preempted: saved step %d, exiting", step)
                return eval_metrics
        progress.close()

        final_step = int(state["step"])
        eval_metrics = evaluate(final_step, state["params"])
    if is_host0:
        write_text(run_path(workdir) / "final_metrics.json",
                   json.dumps({"step": final_step, "num_params": setup.num_params, **eval_metrics}, indent=2))
    return eval_metrics
