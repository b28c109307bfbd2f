"""bigvl side by side with open_clip on this machine: the same CLIP training step, and the
same JPEG → crop → tokens input path.

    bash benchmarks/open_clip_side_by_side.sh    # makes the venv, then runs this
    python -m benchmarks.open_clip_compare --python VENV/bin/python [--arch S64|B16]
        [--batch N] [--steps 5] [--skip-train] [--skip-pipeline] [--cores 0,1]
        [--max-load 0.75] [--max-other-cpu 20] [--wait-idle 0] [--allow-busy]

Train step: the architecture `--arch` (see `open_clip_reference.ARCHS`) built on both sides,
parameter for parameter (both counts are printed and must agree); bigvl runs its real train
step (`benchmarks.train_step.CompiledStep`: configs/clip_b16.py resized, float32, no
remat, softmax loss, AdamW + clipping) in this process, open_clip its own step in a
subprocess of `--python` (`open_clip_reference.py`). Same batch size, float32, all cores
for each, pinned alike: this process sets its CPU affinity to `--cores` (default: all it may use)
before JAX starts, XLA sizes its intra-op pool from that affinity (checked with jax 0.10.2: one
`tf_XLAEigen` thread per allowed core), and the open_clip subprocess inherits the affinity
and calls torch.set_num_threads(len(affinity)). Steps alternate — bigvl, open_clip, bigvl,
... — after one untimed step each, so load from other processes hits both alike; step time
= the median, with min, max, IQR and std beside it (≥ 5 timed steps). Prints a JSON line
with `step_time_ratio` (bigvl / open_clip: below 1 means bigvl is faster).

Load-proof: before timing, the 1-min load average and the other processes' CPU over one
second are read (`machine_load.LoadGate`); above `--max-load` (default 0.75) or with another
process above `--max-other-cpu` % of a core it refuses (exit 3), unless `--allow-busy`, which
times anyway and writes "busy": true and a warning. `--wait-idle S` waits up to S seconds
for the machine to quieten first. The JSON line carries the load before and after, the
busy processes before, and the other processes' CPU during the run.

Input pipeline: `benchmarks.input_pipeline` (bigvl's ExampleProcessor on records of
the JPEGs) against open_clip's training transform + tokenizer on the same files, one
thread each; `pairs_per_s_ratio` = bigvl / open_clip (above 1 means bigvl is faster).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import subprocess
import sys

from benchmarks.input_pipeline import bigvl_pairs_per_s, make_jpegs
from benchmarks.machine_load import LoadGate, MachineBusy
from benchmarks.train_step import CompiledStep, summarise
from bigvl.config import load_config
from bigvl.models.flops import model_flops_per_pair
from bigvl.parallel.process import setup_process

REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "open_clip_reference.py")
CLIP_B16 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "clip_b16.py")


def bigvl_config(arch: str, batch: int):
    """configs/clip_b16.py (open_clip ViT-B-16) at `batch`, float32, no remat, one mesh axis;
    for arch S64 resized to open_clip_reference.ARCHS['S64']."""
    config = load_config(CLIP_B16)
    config.batch_size = batch
    config.model.dtype, config.model.remat = "float32", "none"
    config.mesh.update(data=-1, fsdp=1, tensor=1)
    if arch == "S64":
        config.model.image.update(variant="custom", image_size=64, patch_size=8, width=256, depth=6,
                                  num_heads=4, mlp_dim=1024)
        config.model.text.update(variant="custom", vocab_size=4096, context_length=32, width=256, depth=6,
                                 num_heads=4, mlp_dim=1024)
        config.model.embed_dim = 256
    return config


def spread(times: list[float]) -> dict:
    """median, min, max, interquartile range and (sample) std of step times, seconds."""
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else (times[0],) * 3
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "iqr": q3 - q1,
            "std": statistics.stdev(times) if len(times) > 1 else 0.0}


def pin_cores(cores: list[int] | None) -> list[int]:
    """Sets this process's CPU affinity to `cores` (None: keep it) and returns it, sorted; call
    before JAX starts its backend (XLA sizes its thread pool from the affinity) and before
    starting the open_clip subprocess (it inherits the affinity)."""
    if cores:
        os.sched_setaffinity(0, cores)
    return sorted(os.sched_getaffinity(0))


def compare_train_step(python: str, arch: str, batch: int, steps: int) -> dict:
    """Alternating timed steps of bigvl and open_clip; the side-by-side record."""
    server = subprocess.Popen([python, REFERENCE, "train-step", "--arch", arch, "--batch", str(batch)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = json.loads(server.stdout.readline())

        def open_clip_step() -> dict:
            server.stdin.write("step\n")
            server.stdin.flush()
            return json.loads(server.stdout.readline())

        bench = CompiledStep(bigvl_config(arch, batch))
        if bench.num_params != ready["num_params"]:
            raise RuntimeError(f"architectures differ: bigvl {bench.num_params:,} params, "
                               f"open_clip {ready['num_params']:,}")
        bench.step(), open_clip_step()  # untimed: first-run allocations
        ours, theirs, losses = [], [], []
        for _ in range(steps):
            seconds, loss = bench.step()
            ours.append(seconds)
            losses.append(loss)
            theirs.append(open_clip_step()["seconds"])
        server.stdin.write("quit\n")
        server.stdin.flush()
    finally:
        server.stdin.close()
        server.wait(timeout=60)
    record = summarise(bench, ours, losses)
    ratio = record["step_time_s"] / statistics.median(theirs)
    ours_spread, theirs_spread = spread(ours), spread(theirs)
    flops = record["model_flops_per_pair"]  # what bigvl's step computes (its pooled-only last blocks)
    # open_clip computes every position of the last blocks: its own count for its FLOP/s and MFU
    full = bigvl_config(arch, batch)
    full.model.pooled_last_block = False
    their_flops = model_flops_per_pair(full.model, bench.num_texts)["train"]
    peak = record["peak_flops_per_device"]
    return {"benchmark": "train_step_side_by_side", "arch": arch, "batch_size": batch, "dtype": "float32",
            "steps": steps, "bigvl_params": bench.num_params, "open_clip_params": ready["num_params"],
            "bigvl_step_s": record["step_time_s"], "open_clip_step_s": statistics.median(theirs),
            "bigvl_step_times": ours, "open_clip_step_times": theirs,
            "bigvl_spread_s": ours_spread, "open_clip_spread_s": theirs_spread,
            "bigvl_pairs_per_s": batch / record["step_time_s"],
            "open_clip_pairs_per_s": batch / statistics.median(theirs),
            "bigvl_gflops_per_s": batch * flops / record["step_time_s"] / 1e9,
            "open_clip_gflops_per_s": batch * their_flops / statistics.median(theirs) / 1e9,
            "model_flops_per_pair": flops, "open_clip_model_flops_per_pair": their_flops, "cpu_peak_flops": peak,
            "bigvl_mfu": record["mfu"],
            "open_clip_mfu": batch * their_flops / statistics.median(theirs) / peak if peak else None,
            "bigvl_peak_memory_bytes": record["peak_memory_bytes"], "torch": ready["torch"],
            "torch_threads": ready["threads"], "torch_affinity": ready.get("affinity"),
            "cores": sorted(os.sched_getaffinity(0)), "step_time_ratio": ratio}


def compare_input_pipeline(python: str, directory: str, num: int, repeats: int) -> dict:
    """bigvl's ExampleProcessor and open_clip's transform + tokenizer on the same JPEGs."""
    items = make_jpegs(directory, num, 256)
    ours = bigvl_pairs_per_s(directory, items, 224, 77, repeats)
    out = subprocess.run([python, REFERENCE, "input-pipeline", "--dir", directory, "--repeats", str(repeats)],
                         check=True, capture_output=True, text=True).stdout
    theirs = json.loads(out.strip().splitlines()[-1])
    return {"benchmark": "input_pipeline_side_by_side", "num": num, "jpeg_size": 256, "crop": 224, "context": 77,
            "bigvl_pairs_per_s": ours["pairs_per_s"], "open_clip_pairs_per_s": theirs["pairs_per_s"],
            "bigvl_output": f"uint8 {ours['image_shape']}, bilinear, crop scale [0.9, 1], sentencepiece",
            "open_clip_output": f"{theirs['image_dtype']} {theirs['image_shape']}, bicubic, crop scale "
                                "[0.9, 1], normalised, CLIP BPE",
            "threads": 1, "pairs_per_s_ratio": ours["pairs_per_s"] / theirs["pairs_per_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.open_clip_compare",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", required=True, help="the venv's python with torch + open_clip_torch")
    parser.add_argument("--arch", choices=("S64", "B16"), default="S64")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per side (at least 5)")
    parser.add_argument("--pipeline-dir", default="/tmp/bigvl_jpegs")
    parser.add_argument("--pipeline-num", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--cores", type=lambda v: [int(c) for c in v.split(",")], default=None,
                        help="comma-separated CPU ids both sides run on (default: this process's affinity)")
    parser.add_argument("--max-load", type=float, default=0.75, help="refuse above this 1-min load average")
    parser.add_argument("--max-other-cpu", type=float, default=20.0,
                        help="refuse when another process uses more than this %% of a core")
    parser.add_argument("--wait-idle", type=float, default=0.0, help="seconds to wait for an idle machine")
    parser.add_argument("--allow-busy", action="store_true", help="time on a busy machine anyway (flagged)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.steps < 5:
        parser.error(f"--steps {args.steps}: the spread needs at least 5 timed steps")
    pin_cores(args.cores)  # before JAX's backend starts
    host_malloc = "reuse" if setup_process(level=logging.WARNING) else "default"  # as bigvl.main runs
    xla_flags = os.environ.get("XLA_FLAGS", "")  # recorded: XLA CPU options change the step time
    gate = LoadGate(max_load=args.max_load, max_other_cpu=args.max_other_cpu)
    try:
        if not args.skip_train:
            before = gate.check(args.allow_busy, args.wait_idle)
            r = compare_train_step(args.python, args.arch, args.batch, args.steps)
            r.update(gate.finish(before), xla_flags=xla_flags, host_malloc=host_malloc)
            report_load(r)
            print(json.dumps(r), flush=True)
            print(f"train step, {args.arch} CLIP ({r['bigvl_params']:,} params both), batch {args.batch}, float32, "
                  f"cores {r['cores']}: bigvl {r['bigvl_step_s']:.3f} s (IQR {r['bigvl_spread_s']['iqr']:.3f}, "
                  f"{r['bigvl_gflops_per_s']:.1f} GFLOP/s), open_clip {r['open_clip_step_s']:.3f} s "
                  f"(IQR {r['open_clip_spread_s']['iqr']:.3f}, {r['open_clip_gflops_per_s']:.1f} GFLOP/s); "
                  f"bigvl/open_clip time = {r['step_time_ratio']:.2f}; load {r['load_before'][0]:.2f} → "
                  f"{r['load_after'][0]:.2f}{' BUSY' if r['busy'] else ''}", flush=True)
        if not args.skip_pipeline:
            if not args.skip_train:  # the load average still holds our own train steps: other processes only
                gate = dataclasses.replace(gate, max_load=float("inf"))
            before = gate.check(args.allow_busy, args.wait_idle)
            r = compare_input_pipeline(args.python, args.pipeline_dir, args.pipeline_num, args.repeats)
            r.update(gate.finish(before))
            report_load(r)
            print(json.dumps(r), flush=True)
            print(f"input pipeline, one thread: bigvl {r['bigvl_pairs_per_s']:.0f} pairs/s, open_clip "
                  f"{r['open_clip_pairs_per_s']:.0f} pairs/s; bigvl/open_clip = {r['pairs_per_s_ratio']:.2f}",
                  flush=True)
    except MachineBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0


def report_load(record: dict) -> None:
    """A loud warning on stderr when `record` was timed on a busy machine."""
    if record["busy"]:
        print("WARNING: BUSY MACHINE — these timings are not comparable to idle figures: "
              + "; ".join(record["busy_reasons"]), file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
