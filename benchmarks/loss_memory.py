"""Per-device memory of contrastive loss + gradient as the global batch grows, and the speed
of the tiled softmax loss against the plain one.

    python -m benchmarks.loss_memory [--devices 8] [--dim 512] [--max-batch 1048576]

Memory: for each loss and global batch B (1k ... max-batch) it compiles
`jax.jit(jax.value_and_grad(loss))` over a mesh of `--devices` simulated CPU devices (batch
split over all of them) and reads XLA's `memory_analysis()`: per-device temporary buffers
plus arguments (the embedding shards). Compiling allocates nothing, so batches whose B x B
logits would need terabytes are measured too. Losses:

  softmax_plain       bigvl.losses.contrastive.softmax_contrastive_loss, global-batch jnp (GSPMD shards the B x B logits)
  softmax_all_gather  open_clip's local loss: gather all B embeddings, b x B logits per device
  softmax_tiled       bigvl.losses.ring.tiled_softmax_contrastive_loss (ring + tiles + custom VJP)
  sigmoid_plain       bigvl.losses.contrastive.sigmoid_contrastive_loss
  sigmoid_ring        bigvl.losses.ring.ring_sigmoid_contrastive_loss

Speed: executes plain and tiled softmax loss + gradient at `--time-batch` (both fit), then
the tiled loss alone at `--large-batch`, where the plain loss would need B^2 * 4 bytes of
logits. Prints one JSON line per measurement and a table; writes `--markdown` and `--plot`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp

from bigvl.losses import contrastive as losses
from bigvl.losses import ring as ring_losses
from bigvl.parallel.mesh import batch_sharding, make_mesh, replicated

BATCHES = (1024, 4096, 16384, 65536, 262144, 1048576)
LOGIT_SCALE, LOGIT_BIAS = 1 / 0.07, -10.0


def loss_functions(mesh, tile_size: int) -> dict[str, tuple[Callable, int]]:
    """{name: (loss(image_embeds, text_embeds, *scalars) -> scalar, number of scalar args)}."""
    return {
        "softmax_plain": (losses.softmax_contrastive_loss, 1),
        "softmax_all_gather": (lambda x, y, s: ring_losses.all_gather_softmax_contrastive_loss(
            x, y, s, mesh=mesh), 1),
        "softmax_tiled": (lambda x, y, s: ring_losses.tiled_softmax_contrastive_loss(
            x, y, s, mesh=mesh, tile_size=tile_size), 1),
        "sigmoid_plain": (losses.sigmoid_contrastive_loss, 2),
        "sigmoid_ring": (lambda x, y, s, b: ring_losses.ring_sigmoid_contrastive_loss(
            x, y, s, b, mesh=mesh, tile_size=tile_size), 2),
    }


def compile_loss_and_grad(loss: Callable, num_scalars: int, mesh, batch: int, dim: int):
    """The AOT-compiled value_and_grad of `loss` for float32 [batch, dim] embeddings split over
    the mesh's batch axes and replicated scalars."""
    embeds = jax.ShapeDtypeStruct((batch, dim), jnp.float32, sharding=batch_sharding(mesh))
    scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=replicated(mesh))
    grad_shardings = (batch_sharding(mesh),) * 2 + (replicated(mesh),) * num_scalars
    step = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(2 + num_scalars))),
                   out_shardings=(replicated(mesh), grad_shardings))  # gradients split like the inputs
    with jax.set_mesh(mesh):
        return step.lower(embeds, embeds, *[scalar] * num_scalars).compile()


def measure_memory(name: str, loss: Callable, num_scalars: int, mesh, batch: int, dim: int) -> dict:
    """Compiles loss + grad and returns per-device byte counts from XLA's memory analysis."""
    start = time.perf_counter()
    stats = compile_loss_and_grad(loss, num_scalars, mesh, batch, dim).memory_analysis()
    return {"loss": name, "global_batch": batch, "dim": dim, "devices": mesh.devices.size,
            "temp_bytes": stats.temp_size_in_bytes, "argument_bytes": stats.argument_size_in_bytes,
            "output_bytes": stats.output_size_in_bytes,
            "per_device_bytes": stats.temp_size_in_bytes + stats.argument_size_in_bytes,
            "compile_s": round(time.perf_counter() - start, 2)}


def random_embeddings(mesh, batch: int, dim: int, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    """Two L2-normalised float32 [batch, dim] arrays made on the devices, split over the batch axes."""
    def make(key):
        image_key, noise_key = jax.random.split(key)
        x = jax.random.normal(image_key, (batch, dim))
        y = x + jax.random.normal(noise_key, (batch, dim))  # correlated pairs
        normalise = lambda a: a / jnp.linalg.norm(a, axis=1, keepdims=True)
        return normalise(x), normalise(y)
    sharding = batch_sharding(mesh)
    return jax.jit(make, out_shardings=(sharding, sharding))(jax.random.key(seed))


def time_loss_and_grad(name: str, loss: Callable, mesh, batch: int, dim: int, repeats: int) -> dict:
    """Executes the compiled softmax loss + grad; the best of `repeats` runs after a warm-up
    (no warm-up when repeats == 1, for the slow large-batch run)."""
    x, y = random_embeddings(mesh, batch, dim)
    scale = jax.device_put(jnp.float32(LOGIT_SCALE), replicated(mesh))
    start = time.perf_counter()
    compiled = compile_loss_and_grad(loss, 1, mesh, batch, dim)
    compile_s = time.perf_counter() - start
    if repeats > 1:
        jax.block_until_ready(compiled(x, y, scale))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value, _ = jax.block_until_ready(compiled(x, y, scale))
        times.append(time.perf_counter() - start)
    return {"timing": name, "global_batch": batch, "dim": dim, "devices": mesh.devices.size,
            "seconds": round(min(times), 3), "runs": repeats, "compile_s": round(compile_s, 2),
            "loss_value": float(value)}


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def memory_table(records: list[dict], batches: list[int], markdown: bool) -> str:
    """Loss rows x global-batch columns of per-device bytes (temp + arguments)."""
    names = list(dict.fromkeys(r["loss"] for r in records))
    cell = {(r["loss"], r["global_batch"]): human_bytes(r["per_device_bytes"]) for r in records}
    header = ["loss \\ global batch"] + [f"{b:,}" for b in batches]
    rows = [[name] + [cell.get((name, b), "not compiled") for b in batches] for name in names]
    rows.append(["B x B logits / devices"] + [human_bytes(b * b * 4 / records[0]["devices"]) for b in batches])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(row[k]) for row in [header] + rows) for k in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(row, widths)))
                     for row in [header] + rows)


def write_plot(records: list[dict], path: str) -> None:
    """Log-log plot of per-device bytes against the global batch, one line per loss."""
    import matplotlib  # local: the Agg backend is chosen before pyplot loads
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["loss"] for r in records):
        points = [(r["global_batch"], r["per_device_bytes"] / 2 ** 30) for r in records if r["loss"] == name]
        ax.plot(*zip(*points), marker="o", label=name)
    batches = sorted({r["global_batch"] for r in records})
    devices = records[0]["devices"]
    ax.plot(batches, [b * b * 4 / devices / 2 ** 30 for b in batches], "k--", lw=1,
            label="B x B float32 logits / devices")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("global batch B")
    ax.set_ylabel("per-device memory, GiB (temp + inputs)")
    ax.set_title(f"contrastive loss + grad, d={records[0]['dim']}, {devices} devices (XLA memory analysis)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def timing_text(timings: list[dict], dim: int) -> str:
    """Readable lines for the executed runs: seconds, and the tiled / plain ratio."""
    lines, by_batch = [], {}
    for t in timings:
        by_batch.setdefault(t["global_batch"], {})[t["timing"]] = t
        lines.append(f"- {t['timing']} at global batch {t['global_batch']:,} (d={dim}): loss + grad "
                     f"{t['seconds']:.2f} s (best of {t['runs']}), loss {t['loss_value']:.5f}")
    for batch, runs in by_batch.items():
        if {"softmax_plain", "softmax_tiled"} <= runs.keys():
            ratio = runs["softmax_tiled"]["seconds"] / runs["softmax_plain"]["seconds"]
            lines.append(f"- tiled / plain time at {batch:,}: {ratio:.2f}")
        elif "softmax_tiled" in runs:
            lines.append(f"- at {batch:,} the plain loss would hold B x B float32 logits = "
                         f"{batch * batch * 4 / 1e9:.1f} GB (global), not run")
    return "\n".join(lines)


def write_markdown(path: str, command: str, records, batches, timings, args) -> None:
    devices = records[0]["devices"]
    text = f"""# Contrastive loss memory

Generated by

    {command}

Per-device memory of `jax.value_and_grad(loss)` (loss + gradients w.r.t. both embeddings and
the scalars) for float32 embeddings of width d = {args.dim}, global batch B split over
{devices} simulated CPU devices (mesh data={devices}). Numbers are XLA's compiled memory analysis
(`temp_size_in_bytes + argument_size_in_bytes` of the SPMD program, i.e. one device), so
batches far beyond this machine's RAM are measured without running them. Tiles of the
ring losses: {args.tile_size}.

{memory_table(records, batches, markdown=True)}

![per-device memory](loss_memory.png)

- `softmax_plain`, `sigmoid_plain`: `bigvl.losses.contrastive`, global-batch jnp; GSPMD shards the
  B x B logits but keeps several B^2/devices buffers for the backward: O(B^2) per device.
- `softmax_all_gather`: open_clip's local loss (all-gather the embeddings, b x B logits per
  direction): O(b * B) = O(B^2 / devices).
- `softmax_tiled`, `sigmoid_ring`: `bigvl.losses.ring`; embeddings travel around the ring,
  logits exist one tile at a time, the backward recomputes them: O(b * d + tile^2), linear
  in B (at large B it is a few copies of the b x d embedding shard: the visiting block,
  its gradient and the transfer buffers).

## Speed (executed, {devices} simulated devices sharing this machine's {os.cpu_count()} CPU cores)

{timing_text(timings, args.dim) or "- not run"}
"""
    with open(path, "w") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=8, help="simulated CPU devices (the ring size)")
    parser.add_argument("--dim", type=int, default=512, help="embedding width d")
    parser.add_argument("--max-batch", type=int, default=BATCHES[-1], help="largest global batch compiled")
    parser.add_argument("--tile-size", type=int, default=ring_losses.DEFAULT_TILE_SIZE)
    parser.add_argument("--time-batch", type=int, default=8192,
                        help="global batch at which plain and tiled softmax are both executed (0: skip)")
    parser.add_argument("--large-batch", type=int, default=65536,
                        help="global batch at which the tiled softmax alone is executed (0: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs at --time-batch (best kept)")
    parser.add_argument("--markdown", default="docs/results/loss_memory_report.md", help="report path ('' to skip)")
    parser.add_argument("--plot", default="docs/results/loss_memory.png", help="plot path ('' to skip)")
    args = parser.parse_args(argv)

    jax.config.update("jax_num_cpu_devices", args.devices)  # before any JAX operation
    mesh = make_mesh({"data": -1}, devices=jax.devices("cpu")[:args.devices])
    loss_fns = loss_functions(mesh, args.tile_size)

    batches = [b for b in BATCHES if b <= args.max_batch]
    records = []
    for batch in batches:
        for name, (loss, num_scalars) in loss_fns.items():
            record = measure_memory(name, loss, num_scalars, mesh, batch, args.dim)
            records.append(record)
            print(json.dumps(record), flush=True)
    print(memory_table(records, batches, markdown=False), flush=True)

    timings = []
    runs = [(args.time_batch, "softmax_plain", args.repeats), (args.time_batch, "softmax_tiled", args.repeats),
            (args.large_batch, "softmax_tiled", 1)]
    for batch, name, repeats in runs:
        if batch:
            timing = time_loss_and_grad(name, loss_fns[name][0], mesh, batch, args.dim, repeats)
            timings.append(timing)
            print(json.dumps(timing), flush=True)
    if timings:
        print(timing_text(timings, args.dim), flush=True)

    command = " ".join(["python -m benchmarks.loss_memory", *(sys.argv[1:] if argv is None else argv)])
    if args.plot:
        write_plot(records, args.plot)
    if args.markdown:
        write_markdown(args.markdown, command, records, batches, timings, args)


if __name__ == "__main__":
    main()
