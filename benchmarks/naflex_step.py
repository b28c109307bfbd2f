"""NaFlex train step per length bucket: step time per bucket and how often the step compiles.

    python -m benchmarks.naflex_step [--config demo] [--lengths 16,36,64] [--steps 3] [--config.key=value ...]

Builds the state and the jitted update as `bigvl.train.loop` does (the same `CountedTraces`
wrapper that logs `step_compiles`), with model.image.naflex on and data.naflex.lengths set;
each bucket gets a random batch shaped as the loader makes it (B_L = tokens_per_step // L
examples, image_patches uint8 [B_L, L, p·p·3], grids of square, wide and tall images from
`choose_grid`). It then runs `--steps` cycles of the bucket schedule (each cycle visits every
length once) and times each step. Prints one JSON line: per bucket its length, batch, tokens,
first-call seconds (compile + run) and median step seconds; `compiles` (traces of the step);
the load average (the box may be shared). Then a readable table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import flax.linen as nn
import jax
import numpy as np

from benchmarks.train_step import random_batch
from bigvl.config import apply_overrides, load_config, split_overrides, validate
from bigvl.data.naflex import choose_grid
from bigvl.data.naflex_buckets import patch_size_of, schedule_from_config
from bigvl.parallel.mesh import batch_sharding, host_local_to_global, make_mesh, rules_from_config
from bigvl.train.compile_count import CountedTraces
from bigvl.train.state import make_train_setup
from bigvl.train.step import make_train_step

ASPECTS = ((1, 1), (1, 2), (2, 1))  # (H, W) of the images: square, wide, tall


def naflex_batch(config, length: int, batch: int, seed: int) -> dict[str, np.ndarray]:
    """A random host batch of `batch` examples at patch budget `length` (the loader's keys)."""
    c = config.copy_and_resolve_references()
    c.batch_size = batch
    out = random_batch(c, 1, seed)
    del out["image"]
    p = patch_size_of(config.model.image)
    rng = np.random.default_rng(seed)
    out["image_patches"] = rng.integers(0, 256, (batch, length, p * p * 3), dtype=np.uint8)
    out["image_spatial_shapes"] = np.asarray([choose_grid(*ASPECTS[i % 3], p, length) for i in range(batch)], np.int32)
    return out


def run(config, steps: int) -> dict:
    mesh = make_mesh(config.mesh)
    rules = rules_from_config(config.sharding_rules)
    schedule = schedule_from_config(config, mesh.devices.size)
    setup = make_train_setup(config, mesh, rules)
    state = setup.compiled_init(jax.random.key(0))
    traces = CountedTraces(make_train_step(config, setup))
    batches = {L: host_local_to_global(naflex_batch(config, L, b, i), mesh)
               for i, (L, b) in enumerate(zip(schedule.lengths, schedule.batch_sizes))}
    times: dict[int, list[float]] = {L: [] for L in schedule.lengths}
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        step = jax.jit(traces, in_shardings=(setup.state_shardings, batch_sharding(mesh)),
                       out_shardings=(setup.state_shardings, None), donate_argnums=(0,))
        for n in range((steps + 1) * len(schedule.lengths)):  # the first cycle compiles each length
            length = schedule.length(n)
            start = time.perf_counter()
            state, metrics = step(state, batches[length])
            jax.block_until_ready(metrics["loss"])
            times[length].append(time.perf_counter() - start)
    buckets = [{"length": L, "batch": b, "tokens": b * L, "first_call_s": round(times[L][0], 3),
                "median_step_s": round(statistics.median(times[L][1:]), 4)}
               for L, b in zip(schedule.lengths, schedule.batch_sizes)]
    return {"benchmark": "naflex_step", "buckets": buckets, "compiles": traces.count,
            "steps": sum(len(t) for t in times.values()), "devices": mesh.devices.size,
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="demo")
    parser.add_argument("--lengths", default="16,36,64")
    parser.add_argument("--steps", type=int, default=3, help="timed cycles over the lengths (after one compiling)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    config = load_config(args.config)
    config.model.image.naflex = True
    config.data.naflex.lengths = [int(x) for x in args.lengths.split(",")]
    apply_overrides(config, split_overrides(rest))
    validate(config)
    record = run(config, args.steps)
    print(json.dumps(record), flush=True)
    for b in record["buckets"]:
        print(f"L={b['length']:5d}  batch {b['batch']:5d}  tokens {b['tokens']:7d}  first call {b['first_call_s']:7.2f} s"
              f"  median step {b['median_step_s']:.4f} s")
    print(f"compiles: {record['compiles']} for {record['steps']} steps over {len(record['buckets'])} lengths; "
          f"load average {record['loadavg']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
