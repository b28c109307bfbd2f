"""One accelerator, one script, one JSON line: the figures a GPU (or TPU) machine should report.

    python -m benchmarks.device_check [--cpu] [--budget-s 420]
    benchmarks/device_check.sh [--cpu]     (sets the recommended XLA GPU flags first)

Three measurements, each through the real code path (no second implementation):

1. train: CLIP ViT-B/16 (configs/clip_b16.py, bf16 compute, fp32 params, remat off, attention
   by backend: cuDNN flash on GPU) at the largest per-device batch that fits. The batch comes
   from XLA's memory analysis of a probe compile (bytes per pair, scaled to 90 % of the
   device's memory, rounded down to a multiple of 32), backed off by a quarter on an
   out-of-memory error; then step time (median of timed steps), pairs/s and MFU against the
   device's dense bf16 peak (benchmarks/train_step.py does the timing).
2. loss: plain vs tiled softmax contrastive loss + gradient (bigvl.losses) on float32
   [B, 512] embeddings: the largest power-of-two B each compiles within the device's memory
   (plain needs B² logits; tiled O(B·D)), and the time of one loss + gradient there.
3. decoding: KV-cached greedy captions/s of the CoCa B/16 captioner (configs/coca_b16.py,
   random init, 32 tokens, EOS disabled so every caption runs every step).

`--cpu`: the same three on the demo sizes (configs/demo.py with one layer per tower,
configs/coca_demo.py, small batches) so the tests can run the script on a CPU in seconds; its figures say nothing about
speed. Stops starting new measurements after `--budget-s` seconds (a partial line says
which were skipped).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax

from benchmarks import decoding
from benchmarks.loss_memory import loss_functions, measure_memory, time_loss_and_grad
from benchmarks.train_step import CompiledStep, run
from bigvl.config import load_config
from bigvl.parallel.mesh import make_mesh

GPU = {"train_config": "configs/clip_b16.py", "probe_batch": 64, "max_batch": 4096, "steps": 10,
       "loss_dim": 512, "loss_batches": [2 ** k for k in range(12, 21)], "decode_config": "configs/coca_b16.py",
       "decode_batch": 256, "decode_length": 32}
CPU = {"train_config": "configs/demo.py", "probe_batch": 4, "max_batch": 8, "steps": 1, "depth": 1,
       "loss_dim": 32, "loss_batches": [64, 128], "decode_config": "configs/coca_demo.py",
       "decode_batch": 4, "decode_length": 6}
MEMORY_FRACTION = 0.9  # of the device's memory that a chosen batch may plan to use


def device_memory_bytes(device) -> int | None:
    """The device's memory in bytes (the runtime's bytes_limit), None on the CPU."""
    stats = device.memory_stats() or {}
    return int(stats["bytes_limit"]) if "bytes_limit" in stats else None


def _train_config(sizes: dict, batch: int):
    config = load_config(sizes["train_config"])
    config.batch_size = batch
    config.model.remat = "none"
    config.model.dtype, config.model.param_dtype = "bfloat16", "float32"
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = -1, 1, 1
    if sizes.get("depth"):  # --cpu: one layer per tower keeps compiling short
        config.model.image.depth = config.model.text.depth = sizes["depth"]
    return config


def largest_train_batch(sizes: dict, memory: int | None, devices: int) -> tuple[int, dict]:
    """(global batch to time, how it was chosen) from a probe compile's memory analysis."""
    probe = sizes["probe_batch"] * devices
    if memory is None:  # CPU: no limit to plan against; the configured maximum
        return sizes["max_batch"] * devices, {"how": "cpu: fixed batch"}
    m = CompiledStep(_train_config(sizes, probe)).compiled.memory_analysis()
    fixed = m.argument_size_in_bytes  # state + batch; the batch part is small next to activations
    per_pair = max(1.0, (m.temp_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes) / probe * devices)
    fit = int((MEMORY_FRACTION * memory - fixed) / per_pair) // 32 * 32
    batch = max(32, min(sizes["max_batch"], fit)) * devices
    return batch, {"how": "probe compile", "probe_batch": probe, "bytes_per_pair_per_device": per_pair}


def measure_train(sizes: dict, memory: int | None) -> dict:
    devices = jax.device_count()
    batch, chosen = largest_train_batch(sizes, memory, devices)
    for _ in range(4):  # back off on an out-of-memory error
        try:
            record = run(_train_config(sizes, batch), steps=sizes["steps"], warmup=1)
            break
        except Exception as e:  # noqa: BLE001 (XlaRuntimeError RESOURCE_EXHAUSTED)
            if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e).lower():
                raise
            batch = max(32 * devices, batch * 3 // 4 // (32 * devices) * 32 * devices)
    else:
        return {"error": "out of memory down to the smallest batch"}
    keep = ("device_kind", "devices", "batch_size", "dtype", "param_dtype", "step_time_s", "pairs_per_s",
            "model_flops_per_pair", "model_tflops_per_s", "mfu", "peak_flops_per_device", "peak_source",
            "peak_memory_bytes", "compile_s", "loss_first", "loss_last")
    return {"config": sizes["train_config"], "per_device_batch": batch // devices, "batch_choice": chosen,
            **{k: record[k] for k in keep}}


def measure_loss(sizes: dict, memory: int | None) -> dict:
    mesh = make_mesh({"data": -1})
    losses = loss_functions(mesh, tile_size=min(1024, sizes["loss_batches"][0]))
    out = {"dim": sizes["loss_dim"], "devices": mesh.devices.size}
    for name in ("softmax_plain", "softmax_tiled"):
        loss, scalars = losses[name]
        best = None
        for batch in sizes["loss_batches"]:
            record = measure_memory(name, loss, scalars, mesh, batch, sizes["loss_dim"])
            planned = record["per_device_bytes"] + record["output_bytes"]
            if memory is not None and planned > MEMORY_FRACTION * memory:
                break
            best = (batch, planned)
        if best is None:
            out[name] = {"error": "no batch fits"}
            continue
        timing = time_loss_and_grad(name, loss, mesh, best[0], sizes["loss_dim"], repeats=2)
        out[name] = {"largest_batch": best[0], "planned_bytes_per_device": best[1], "seconds": timing["seconds"],
                     "loss_value": timing["loss_value"]}
        jax.clear_caches()
    return out


def measure_decoding(sizes: dict) -> dict:
    line = decoding.main(["--config", sizes["decode_config"], "--batch", str(sizes["decode_batch"]),
                          "--max-length", str(sizes["decode_length"]), "--repeats", "2"])
    return {"config": sizes["decode_config"], "batch": sizes["decode_batch"], "max_length": sizes["decode_length"],
            "captions_per_s": 1.0 / line["cached_s_per_caption"], "speedup_over_uncached": line["speedup"],
            "same_tokens": line["same_tokens"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="reduced sizes for a CPU (the tests)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no measurement after this")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sizes = CPU if args.cpu else GPU
    first = jax.devices()[0]
    memory = None if args.cpu else device_memory_bytes(first)
    start = time.perf_counter()
    line = {"benchmark": "device_check", "mode": "cpu" if args.cpu else "full", "platform": first.platform,
            "device_kind": first.device_kind, "devices": jax.device_count(), "device_memory_bytes": memory,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}
    for name, measure in (("train", lambda: measure_train(sizes, memory)),
                          ("loss", lambda: measure_loss(sizes, memory)),
                          ("decoding", lambda: measure_decoding(sizes))):
        if time.perf_counter() - start > args.budget_s:
            line[name] = {"skipped": f"over the {args.budget_s:.0f} s budget"}
            continue
        t0 = time.perf_counter()
        try:
            line[name] = measure()
        except Exception as e:  # noqa: BLE001 (one failed measurement must not hide the others)
            line[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
        line[name]["wall_s"] = round(time.perf_counter() - t0, 1)
    line["wall_s"] = round(time.perf_counter() - start, 1)
    line["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(line), flush=True)
    return line


if __name__ == "__main__":
    main()
