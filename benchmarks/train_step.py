"""Speed of bigvl's real train step: step time, pairs/s, model FLOPs, MFU and peak memory.

    python -m benchmarks.train_step --config configs/NAME.py[:ARG] [--config.key=value ...]
        [--steps 5] [--warmup 1] [--devices N] [--against key=value ...]

Builds the state and the update exactly as `bigvl.train.loop` does (`make_train_setup`,
`make_train_step`, the same shardings and buffer donation), feeds it one random
device-resident batch (uint8 images, random token ids; T texts per image as the caption
strategy gives), and times `--steps` steps after compiling and `--warmup` untimed steps.
The input pipeline is not in the loop (see `benchmarks.input_pipeline`).

- model FLOPs per pair: `bigvl.models.flops.model_flops_per_pair(config.model, T)["train"]`
  (image + T · text + the captioners' decoder, forward, × 3 for training; no remat or
  GradCache recompute counted);
- MFU: pairs/s · FLOPs per pair / (peak per device · devices); the peak is the vendor's
  dense bf16 figure on accelerators (`bigvl.parallel.hardware`), and on the CPU a float32 matmul
  rate measured on this machine and split over the simulated devices (they share cores);
- peak memory per device: `memory_stats()["peak_bytes_in_use"]` where the backend keeps it
  (GPU, TPU), else XLA's compiled memory analysis (arguments + temporaries + outputs −
  donated aliases, per device).

Prints one JSON line, then a readable table. `--against key=value` (repeatable) also builds
the config with those overrides on top and alternates the two steps one by one, so that a
drifting host slows both alike; its record follows, with `step_time_ratio` (its median step
over the first's).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time

import flax.linen as nn
import jax
import numpy as np

from bigvl.config import ConfigError, apply_overrides, load_config, split_overrides, validate
from bigvl.data.caption_strategies import make_caption_strategy
from bigvl.data.hard_negatives import enabled as hard_negatives_enabled
from bigvl.data.local_views import local_views_of
from bigvl.models.flops import model_flops_per_pair
from bigvl.parallel.hardware import measured_peak
from bigvl.parallel.mesh import (
    batch_sharding,
    check_batch_divisible,
    host_local_to_global,
    make_mesh,
    rules_from_config,
)
from bigvl.parallel.process import setup_process
from bigvl.train.state import make_train_setup
from bigvl.train.step import make_train_step


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """--config/--steps/--warmup/--devices/--peak and the 'key=value' config overrides."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_step",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="configs/NAME.py[:ARG]")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (0 with --warmup 0: compile only, "
                        "for the memory figure)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after compiling")
    parser.add_argument("--devices", type=int, default=0,
                        help="simulated CPU devices (0: what JAX finds; set before JAX starts)")
    parser.add_argument("--peak", type=float, default=0.0,
                        help="peak FLOP/s per device for MFU (0: bigvl.parallel.hardware's table or a CPU matmul)")
    parser.add_argument("--against", action="append", default=[], metavar="KEY=VALUE",
                        help="also time the config with this override (repeatable), steps alternating")
    args, rest = parser.parse_known_args(argv)
    try:
        return args, split_overrides(rest)
    except ConfigError as e:
        parser.error(str(e))


def random_tokens(rng: np.random.Generator, shape: tuple[int, ...], text_cfg) -> np.ndarray:
    """int32 [..., L]: random ids, EOS at a random position >= 1, then padding."""
    length = shape[-1]
    tokens = rng.integers(4, text_cfg.vocab_size, shape, dtype=np.int32)
    ends = rng.integers(1, length, shape[:-1] + (1,))
    positions = np.arange(length)
    return np.where(positions < ends, tokens, np.where(positions == ends, text_cfg.eos_id, text_cfg.pad_id)
                    ).astype(np.int32)


def random_batch(config, num_texts: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A host batch shaped like `make_train_dataset`'s (without `index`): image uint8 [B,S,S,3],
    tokens int32 [B,T,L], skipped_records int32 [B] (zeros), target_tokens int32 [B,Ld]
    for captioner models, negative_tokens / negative_valid with hard negatives."""
    rng = np.random.default_rng(seed)
    size, b = config.model.image.image_size, config.batch_size
    batch = {"image": rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8),
             "tokens": random_tokens(rng, (b, num_texts, config.model.text.context_length), config.model.text),
             "skipped_records": np.zeros(b, np.int32)}
    if config.model.get("kind", "two_tower") != "two_tower":
        batch["target_tokens"] = random_tokens(rng, (b, config.model.decoder.context_length), config.model.text)
    if hard_negatives_enabled(config.data):
        batch["negative_tokens"] = random_tokens(rng, (b, config.model.text.context_length), config.model.text)
        batch["negative_valid"] = np.ones(b, np.int32)
    views = local_views_of(config.loss)  # SigLIP 2's local crops (loss.self_distill)
    if views:
        batch["local_views"] = rng.integers(0, 256, (b, views[0], views[1], views[1], 3), dtype=np.uint8)
    return batch


def peak_memory_bytes(compiled, devices) -> tuple[int, str]:
    """(bytes per device, source): the runtime's peak where it keeps one, else XLA's analysis."""
    stats = [d.memory_stats() or {} for d in devices]
    if all("peak_bytes_in_use" in s for s in stats):
        return max(int(s["peak_bytes_in_use"]) for s in stats), "memory_stats peak_bytes_in_use"
    m = compiled.memory_analysis()
    total = (m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes
             - m.alias_size_in_bytes)
    return int(total), "XLA memory_analysis: arguments + temp + outputs - donated aliases"


class CompiledStep:
    """bigvl's train step for `config`, compiled, with its state and one random batch on the mesh.

    `step()` runs one update and returns (seconds, loss), waiting for it to finish.
    """

    def __init__(self, config):
        self.config = config
        self.mesh = make_mesh(config.mesh)
        rules = rules_from_config(config.sharding_rules)
        check_batch_divisible(config.batch_size, self.mesh)
        self.num_texts = make_caption_strategy(config.data, count_tokens=len).num_texts
        start = time.perf_counter()
        setup = make_train_setup(config, self.mesh, rules)
        self.num_params = setup.num_params
        self.state = setup.compiled_init(jax.random.key(config.seed))
        train_step = make_train_step(config, setup)
        self.batch = host_local_to_global(random_batch(config, self.num_texts), self.mesh)
        shardings = setup.state_shardings
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(rules):
            step_fn = jax.jit(train_step, in_shardings=(shardings, batch_sharding(self.mesh)),
                              out_shardings=(shardings, None), donate_argnums=(0,))
            self.compiled = step_fn.lower(self.state, self.batch).compile()
        self.compile_s = time.perf_counter() - start

    def step(self) -> tuple[float, float]:
        start = time.perf_counter()
        self.state, metrics = self.compiled(self.state, self.batch)
        jax.block_until_ready(metrics)
        return time.perf_counter() - start, float(metrics["loss"])


def summarise(bench: CompiledStep, times: list[float], losses: list[float], peak: float = 0.0,
              peak_source: str = "--peak") -> dict:
    """The measurement record of `times` (timed steps, seconds) on `bench`; peak 0: measured here."""
    config, mesh = bench.config, bench.mesh
    devices = mesh.devices.size
    # T texts per image through the text side; captioners get a target here (random_batch).
    flops_per_pair = model_flops_per_pair(config.model, bench.num_texts + hard_negatives_enabled(config.data),
                                          caption_target="target_tokens" in bench.batch)["train"]
    step_time = statistics.median(times) if times else None  # --steps 0: compile only
    pairs_per_s = config.batch_size / step_time if times else 0.0
    if not peak and times:
        peak, peak_source = measured_peak(devices)
    memory, memory_source = peak_memory_bytes(bench.compiled, list(mesh.devices.flat))
    first = mesh.devices.flat[0]
    return {
        "benchmark": "train_step", "platform": first.platform, "device_kind": first.device_kind,
        "devices": devices, "mesh": dict(mesh.shape), "batch_size": config.batch_size,
        "texts_per_image": bench.num_texts, "image_size": config.model.image.image_size,
        "dtype": config.model.dtype, "param_dtype": config.model.param_dtype, "remat": config.model.remat,
        "loss": config.loss.name, "grad_accum_steps": config.optim.grad_accum_steps,
        "num_params": bench.num_params, "compile_s": round(bench.compile_s, 2), "steps": len(times),
        "step_time_s": step_time, "step_time_min_s": min(times, default=None), "pairs_per_s": pairs_per_s,
        "model_flops_per_pair": flops_per_pair, "model_tflops_per_s": pairs_per_s * flops_per_pair / 1e12,
        "peak_flops_per_device": peak, "peak_source": peak_source,
        "mfu": pairs_per_s * flops_per_pair / (peak * devices) if peak and times else None,
        "peak_memory_bytes": memory, "memory_source": memory_source,
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
    }


def run(config, steps: int = 5, warmup: int = 1, peak: float = 0.0) -> dict:
    """Compiles the train step of `config`, runs `warmup` + `steps` steps; returns the record
    (step time = median of the timed steps)."""
    return run_alternating([config], steps, warmup, peak)[0]


def run_alternating(configs: list, steps: int = 5, warmup: int = 1, peak: float = 0.0) -> list[dict]:
    """Compiles each config's train step, then steps them in turn (one step of each per round,
    `warmup` + `steps` rounds); the records in `configs`' order."""
    benches = [CompiledStep(config) for config in configs]
    times, losses = [[] for _ in benches], [[] for _ in benches]
    for i in range(warmup + steps):
        for bench, bench_times, bench_losses in zip(benches, times, losses):
            seconds, loss = bench.step()
            bench_losses.append(loss)
            if i >= warmup:
                bench_times.append(seconds)
    source = "--peak"
    if not peak and steps:  # one CPU-matmul measurement for every record: their MFUs share a peak
        peak, source = measured_peak(benches[0].mesh.devices.size)
    return [summarise(*args, peak, source) for args in zip(benches, times, losses)]


def table(record: dict) -> str:
    """The record as aligned 'name  value' lines."""
    def fmt(key, value):
        if value is None:
            return "n/a"
        if key == "peak_memory_bytes":
            return f"{value / 2**20:,.1f} MiB"
        if key in ("model_flops_per_pair", "peak_flops_per_device"):
            return f"{value / 1e9:,.2f} GFLOP" + ("/s" if key.startswith("peak") else "")
        if key == "mfu":
            return f"{100 * value:.1f} %"
        if key in ("step_time_s", "step_time_min_s"):
            return f"{value * 1e3:,.1f} ms"
        if isinstance(value, float):
            return f"{value:,.4g}"
        return str(value)
    width = max(map(len, record))
    return "\n".join(f"{k.ljust(width)}  {fmt(k, v)}" for k, v in record.items())


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    setup_process(level=logging.WARNING)  # before JAX starts, as bigvl.main runs
    if args.devices:
        jax.config.update("jax_num_cpu_devices", args.devices)  # before any JAX operation

    runs = [overrides] + ([overrides + args.against] if args.against else [])
    configs = []
    try:
        for run_overrides in runs:
            config = load_config(args.config)
            apply_overrides(config, run_overrides)
            checked = config.copy_and_resolve_references()
            with checked.unlocked():
                checked.world.build = True  # no data or tokenizer is read here
            validate(checked)
            configs.append(config)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    records = run_alternating(configs, steps=args.steps, warmup=args.warmup, peak=args.peak)
    for record, run_overrides in zip(records, runs):
        record["config"] = " ".join([args.config, *(f"--config.{o}" for o in run_overrides)])
        if record is not records[0]:
            record["step_time_ratio"] = (record["step_time_s"] / records[0]["step_time_s"]
                                         if args.steps else None)
        print(json.dumps(record), flush=True)
        print(table(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
