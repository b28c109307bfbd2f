"""Compile time of bigvl's real train step, encoder blocks scanned vs unrolled (`model.scan_layers`).

    python -m benchmarks.compile_time [--suite depth clips_l14] [--depths 24 48] [--batch 8]
        [--devices N] [--timeout S]

Suites:
- `depth`: configs/clip_b16.py (ViT-B/16 image tower, width-512 text tower, bf16, remat
  dots_saveable) with both towers `--depths` layers deep, at a small batch;
- `clips_l14`: configs/clips_l14.py (ViT-L/14: 24 image + 12 text encoder layers; its 6-layer
  captioning decoder is unrolled either way), at the same small batch.

Each measurement runs in a fresh Python process (no warm tracing or compilation caches),
builds the state by shape with `bigvl.train.state.make_train_setup` (setup_s: tracing and
compiling the state initialiser; nothing is allocated), then times, on abstract inputs
(ShapeDtypeStructs carrying the loop's shardings),
`jax.jit(make_train_step(...)).lower(state, batch)` (lower_s: tracing to StableHLO) and
`.compile()` (compile_s: XLA). `stablehlo_lines` is the size of the lowered program.
Prints one JSON line per measurement as it finishes (with `os.getloadavg()`: other
processes on the machine slow compiling down), then a readable table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import flax.linen as nn
import jax

from benchmarks.train_step import random_batch
from bigvl.config import apply_overrides, load_config, validate
from bigvl.data.caption_strategies import make_caption_strategy
from bigvl.models import image_size_of
from bigvl.parallel.mesh import batch_sharding, make_mesh, rules_from_config
from bigvl.train.state import make_train_setup
from bigvl.train.step import make_train_step

MODULE = "benchmarks.compile_time"
CONFIGS = {"depth": "configs/clip_b16.py", "clips_l14": "configs/clips_l14.py"}


def cases(suites: list[str], depths: list[int], batch: int) -> list[dict]:
    """The measurements to run: {suite, config, depth, scan, overrides} for scan False then True."""
    out = []
    for suite in suites:
        for depth in depths if suite == "depth" else [0]:
            overrides = [f"batch_size={batch}"]
            if depth:
                overrides += [f"model.image.depth={depth}", f"model.text.depth={depth}"]
            for scan in (False, True):
                out.append({"suite": suite, "config": CONFIGS[suite], "depth": depth, "scan": scan,
                            "overrides": overrides + [f"model.scan_layers={scan}"]})
    return out


def load(config_path: str, overrides: list[str]):
    """The config at `config_path` with 'key=value' overrides, checked as the trainer checks it."""
    config = load_config(config_path)
    apply_overrides(config, overrides)
    checked = config.copy_and_resolve_references()
    with checked.unlocked():
        checked.world.build = True  # no data or tokenizer is read here
    validate(checked)
    return config


def abstract_batch(config, num_texts: int, sharding) -> dict:
    """ShapeDtypeStructs of a train batch (as `train_step.random_batch` shapes it), on `sharding`."""
    host = random_batch(config, num_texts)
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding) for k, v in host.items()}


def measure(case: dict) -> dict:
    """Builds and compiles the train step of one case in this process; returns its record."""
    config = load(case["config"], case["overrides"])
    mesh = make_mesh(config.mesh)
    rules = rules_from_config(config.sharding_rules)
    num_texts = make_caption_strategy(config.data, count_tokens=len).num_texts
    start = time.perf_counter()
    setup = make_train_setup(config, mesh, rules)
    setup_s = time.perf_counter() - start
    state = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                         jax.eval_shape(setup.init, jax.random.key(config.seed)), setup.state_shardings)
    batch = abstract_batch(config, num_texts, batch_sharding(mesh))
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        step_fn = jax.jit(make_train_step(config, setup), in_shardings=(setup.state_shardings, batch_sharding(mesh)),
                          out_shardings=(setup.state_shardings, None), donate_argnums=(0,))
        start = time.perf_counter()
        lowered = step_fn.lower(state, batch)
        lower_s = time.perf_counter() - start
        start = time.perf_counter()
        lowered.compile()
        compile_s = time.perf_counter() - start
    image_depth = image_size_of(config.model.image).depth
    return {"config": " ".join([case["config"], *(f"--config.{o}" for o in case["overrides"])]),
            "suite": case["suite"], "depth": case["depth"] or image_depth, "scan": case["scan"],
            "batch_size": config.batch_size, "num_params": setup.num_params,
            "setup_s": round(setup_s, 2), "lower_s": round(lower_s, 2), "compile_s": round(compile_s, 2),
            "stablehlo_lines": len(lowered.as_text().splitlines()),
            "backend": jax.default_backend(), "devices": mesh.devices.size,
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def run_case(case: dict, devices: int, timeout: float | None) -> dict:
    """`measure(case)` in a fresh interpreter; its JSON record (or an error record)."""
    cmd = [sys.executable, "-m", MODULE, "--one", json.dumps(case)] + (["--devices", str(devices)] if devices else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**case, "error": f"timed out after {timeout} s", "loadavg": list(os.getloadavg())}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {**case, "error": done.stderr.strip().splitlines()[-1:] or f"exit {done.returncode}",
                "loadavg": list(os.getloadavg())}
    return json.loads(lines[-1])


def table(records: list[dict]) -> str:
    """Aligned rows: suite, depth, scan, setup/lower/compile seconds, program size, load average."""
    head = ("suite", "depth", "scan", "setup_s", "lower_s", "compile_s", "lower+compile", "hlo_lines", "load 1m")
    rows = [head]
    for r in records:
        if "error" in r:
            rows.append((r["suite"], str(r["depth"]), str(r["scan"]), "error: " + str(r["error"])[:60], "", "", "",
                         "", ""))
            continue
        rows.append((r["suite"], str(r["depth"]), str(r["scan"]), f"{r['setup_s']:.1f}", f"{r['lower_s']:.1f}",
                     f"{r['compile_s']:.1f}", f"{r['lower_s'] + r['compile_s']:.1f}", str(r["stablehlo_lines"]),
                     f"{r['loadavg'][0]:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", nargs="+", choices=sorted(CONFIGS), default=["depth", "clips_l14"])
    parser.add_argument("--depths", nargs="+", type=int, default=[24, 48], help="tower depths of the `depth` suite")
    parser.add_argument("--batch", type=int, default=8, help="global batch (compile time hardly depends on it)")
    parser.add_argument("--devices", type=int, default=0,
                        help="simulated CPU devices (0: what JAX finds; set before JAX starts)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per measurement")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one case (JSON) in this process
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.devices:
        jax.config.update("jax_num_cpu_devices", args.devices)  # before any JAX operation
    if args.one:
        print(json.dumps(measure(json.loads(args.one))), flush=True)
        return 0
    records = []
    for case in cases(args.suite, args.depths, args.batch):
        records.append(run_case(case, args.devices, args.timeout))
        print(json.dumps(records[-1]), flush=True)
    print(table(records), flush=True)
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
