"""Command line: compile a config's real train step for a TPU topology, with no TPU attached.

    python -m bigvl.plan --config clip_b16 --topology v5e:16x16 \
        [--max_batch] [--dump_hlo FILE] [--config.k=v ...]      (= bigvl plan ...)

Builds the train step the trainer builds (bigvl/train/state.py `make_train_setup`: the state
by shape with the config's sharding rules; bigvl/train/step.py `make_train_step`) on a mesh
over the abstract devices of `topology` (libtpu: `pip install -e '.[plan]'`), compiles it
for that TPU ahead of time, and prints: whether it compiled (or XLA's error); per-chip HBM
(arguments, outputs, temporaries) against the chip's capacity (bigvl/parallel/hardware.py
`TPU_CHIPS`); XLA's FLOPs per chip per step beside bigvl's model-FLOPs count
(bigvl/models/flops.py); the collectives in the HLO and the bytes each moves; a roofline
estimate of step time and MFU (bigvl/parallel/roofline.py: an estimate, not a measurement);
with `--max_batch`, the largest global batch that fits (doubling, then bisection; each probe
is one compile). The last line is one JSON object for scripts. Exit 0: compiled and fits;
1: compiled but does not fit, or XLA refused it; 2: a bad config or topology.
"""
from __future__ import annotations

import os

# Abstract TPU devices live beside the CPU backend; quiet libtpu's start-up probing.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # no chip is used: several plans may run at once

import json  # noqa: E402 (the environment above must be set before jax loads)
import logging  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from bigvl.cli import command_parser  # noqa: E402
from bigvl.config import ConfigError, apply_overrides, load_config, split_overrides, validate  # noqa: E402
from bigvl.data.hard_negatives import enabled as hard_negatives_enabled  # noqa: E402
from bigvl.data.naflex_buckets import schedule_from_config  # noqa: E402
from bigvl.models import image_size_of  # noqa: E402
from bigvl.models.flops import model_flops_per_pair  # noqa: E402
from bigvl.models.matmul import resolve_weight_grad  # noqa: E402
from bigvl.parallel.hardware import tpu_chip  # noqa: E402
from bigvl.parallel.mesh import BATCH_AXES, batch_sharding, make_mesh, rules_from_config  # noqa: E402
from bigvl.parallel.process import setup_process  # noqa: E402
from bigvl.parallel.roofline import hlo_collectives, roofline  # noqa: E402
from bigvl.parallel.storage import write_text  # noqa: E402
from bigvl.train.state import make_train_setup  # noqa: E402
from bigvl.train.step import make_train_step  # noqa: E402

GiB = 2 ** 30


def topology_devices(topology: str) -> list:
    """The abstract devices of a TPU topology like "v5e:2x2" (libtpu compiles for them; none is attached).

    Raises ValueError naming the topology when libtpu is missing or does not know it.
    """
    generation, _, shape = topology.partition(":")
    if not shape or not all(p.isdigit() for p in shape.split("x")):
        raise ValueError(f"topology {topology!r} must look like v5e:2x2 or v5p:4x4x4")
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", _accelerator_type(generation, shape))
    from jax.experimental import topologies  # only here: it loads libtpu
    try:
        return list(topologies.get_topology_desc(topology_name=topology, platform="tpu").devices)
    except Exception as e:  # noqa: BLE001 (libtpu's errors are RuntimeError / XlaRuntimeError / ImportError)
        raise ValueError(f"topology {topology!r}: libtpu cannot describe it ({str(e).splitlines()[0][:200]}); "
                         "is libtpu installed (pip install -e '.[plan]')?") from None


def _accelerator_type(generation: str, shape: str) -> str:
    """`TPU_ACCELERATOR_TYPE` for libtpu: v5e-style names count chips, v4/v5p count TensorCores."""
    chips = math.prod(int(p) for p in shape.split("x"))
    names = {"v5e": ("v5litepod", 1), "v6e": ("v6e", 1), "v4": ("v4", 2), "v5p": ("v5p", 2)}
    prefix, per_chip = names.get(generation.lower(), (generation, 1))
    return f"{prefix}-{chips * per_chip}"


def load_checked(config_arg: str, overrides: list[str]):
    """The config with overrides, checked as the trainer checks it (data paths are not read here)."""
    config = load_config(config_arg)
    apply_overrides(config, overrides)
    checked = config.copy_and_resolve_references()
    with checked.unlocked():
        checked.world.build = True  # no data, tokenizer or world is read when planning
    validate(checked)
    return config


def abstract_batch(config, num_texts: int, sharding, length: int = 0) -> dict:
    """ShapeDtypeStructs of every key the train step reads, as the pipeline shapes them.

    image uint8 [B,S,S,3], tokens int32 [B,T,L], skipped_records int32 [B], target_tokens int32
    [B,Ld] (captioners), teacher_image / teacher_text float32 [B,Dt] and teacher_logit_scale
    float32 [B] (distillation), negative_tokens int32 [B,L] and negative_valid int32 [B] (hard negatives),
    locca_inputs / locca_labels int32 [B,Ld] (model.locca.depth > 0). length > 0 (a NaFlex bucket):
    image_patches uint8 [B,length,p·p·3] and image_spatial_shapes int32 [B,2] instead of image.
    """
    b, size = config.batch_size, config.model.image.image_size
    spec = {"image": ((b, size, size, 3), np.uint8),
            "tokens": ((b, num_texts, config.model.text.context_length), np.int32),
            "skipped_records": ((b,), np.int32)}
    if config.model.get("kind", "two_tower") != "two_tower":
        spec["target_tokens"] = ((b, config.model.decoder.context_length), np.int32)
    if config.loss.distill_weight:
        dim = int(config.loss.get("teacher_dim", 0) or config.model.embed_dim)
        spec.update(teacher_image=((b, dim), np.float32), teacher_text=((b, dim), np.float32),
                    teacher_logit_scale=((b,), np.float32))
    if config.model.get("locca", {}).get("depth", 0):  # SigLIP 2's LocCa decoder (bigvl/data/locca.py)
        spec.update(locca_inputs=((b, config.model.locca.context_length), np.int32),
                    locca_labels=((b, config.model.locca.context_length), np.int32))
    if length:
        patch = image_size_of(config.model.image).patch_size
        del spec["image"]
        spec.update(image_patches=((b, length, patch * patch * 3), np.uint8), image_spatial_shapes=((b, 2), np.int32))
    if hard_negatives_enabled(config.data):
        spec.update(negative_tokens=((b, config.model.text.context_length), np.int32), negative_valid=((b,), np.int32))
    return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding) for k, (shape, dtype) in spec.items()}


def for_platform(config, platform: str):
    """`config` with its backend-dependent 'auto' choices made for `platform` ('tpu'), not for this
    host's default backend (the CPU): `model.weight_grad_dot` (bigvl.models.matmul)."""
    if config.model.get("weight_grad_dot", "auto") != "auto":
        return config
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.model.weight_grad_dot = resolve_weight_grad("auto", config.model.remat, platform)
    return config


def compile_step(config, devices: list, length: int = 0):
    """(compiled train step, its TrainSetup, mesh) for `config` on `devices` (abstract or real)."""
    config = for_platform(config, devices[0].platform)
    mesh = make_mesh(config.mesh, devices)
    rules = rules_from_config(config.sharding_rules)
    shards = math.prod(mesh.shape[a] for a in BATCH_AXES)
    if config.batch_size % shards:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by data x fsdp = {shards}")
    setup = make_train_setup(config, mesh, rules)
    key = jax.random.key(config.seed)  # eager values stay outside the mesh of abstract devices
    state = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                         jax.eval_shape(setup.init, key), setup.state_shardings)
    batch = abstract_batch(config, setup.objective.num_texts, batch_sharding(mesh), length)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        step_fn = jax.jit(make_train_step(config, setup), in_shardings=(setup.state_shardings, batch_sharding(mesh)),
                          out_shardings=(setup.state_shardings, None), donate_argnums=(0,))
        compiled = step_fn.lower(state, batch).compile()
    return compiled, setup, mesh


def memory(compiled) -> dict[str, int]:
    """Per-chip bytes: arguments, outputs, aliased (donated state reused as output), temporaries, total."""
    m = compiled.memory_analysis()
    out = {"argument_bytes": int(m.argument_size_in_bytes), "output_bytes": int(m.output_size_in_bytes),
           "alias_bytes": int(m.alias_size_in_bytes), "temp_bytes": int(m.temp_size_in_bytes),
           "code_bytes": int(m.generated_code_size_in_bytes)}
    out["total_bytes"] = (out["argument_bytes"] + out["output_bytes"] - out["alias_bytes"] + out["temp_bytes"]
                          + out["code_bytes"])
    return out


def plan(config, topology: str, devices: list | None = None, dump_hlo: str = "", length: int = 0) -> dict:
    """Compiles `config`'s train step for `topology`; the record the CLI prints (see the module docstring).
    dump_hlo: a file to write the optimized HLO to (to see what each collective moves). length: a NaFlex
    bucket's patch budget (config.batch_size then its batch)."""
    chip = tpu_chip(topology)
    devices = topology_devices(topology) if devices is None else devices
    start = time.perf_counter()
    try:
        compiled, setup, mesh = compile_step(config, devices, length)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 (XLA's refusal: resource exhausted, unsupported sharding, ...)
        error = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:500]}"
        return {"topology": topology, "batch_size": config.batch_size, "compiled": False,
                "fits": False if "RESOURCE_EXHAUSTED" in error else None,  # XLA's own out-of-memory verdict
                "error": error, "compile_s": round(time.perf_counter() - start, 1)}
    compile_s = time.perf_counter() - start
    chips = mesh.devices.size
    mem = memory(compiled)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    hlo_flops, bytes_accessed = float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))
    pair = model_flops_per_pair(config.model, setup.objective.num_texts,
                                caption_target=config.model.get("kind", "two_tower") != "two_tower")
    model_flops_chip = pair["train"] * config.batch_size / chips
    hlo = compiled.as_text()
    if dump_hlo:
        write_text(dump_hlo, hlo)  # a local file or a URL (gs://...)
    collectives = hlo_collectives(hlo, chips)
    sent = sum(c["sent_bytes"] for c in collectives.values())
    # XLA's cost analysis counts a loop body once: with K accumulation micro-batches (a loop in
    # bigvl/train/grad_accumulation.py) the step runs it K times. Scanned layers are not scaled.
    loops = int(config.optim.grad_accum_steps)
    times = roofline(hlo_flops * loops, bytes_accessed * loops, sent, chip)
    return {"topology": topology, "chip": chip.name, "chips": chips, "mesh": dict(mesh.shape),
            "batch_size": config.batch_size, "compiled": True, "compile_s": round(compile_s, 1),
            "num_params": setup.num_params, **mem, "hbm_bytes": chip.hbm_bytes,
            "fits": mem["total_bytes"] <= chip.hbm_bytes,
            "hlo_flops_per_chip": hlo_flops * loops, "model_flops_per_chip": model_flops_chip,
            "hlo_over_model_flops": hlo_flops * loops / model_flops_chip if model_flops_chip else None,
            "loop_body_counted_once": {"grad_accum_steps": loops, "scan_layers": bool(config.model.scan_layers)},
            "bytes_accessed_per_chip": bytes_accessed * loops,
            "collectives": {k: {"count": v["count"], "bytes": v["bytes"], "sent_bytes": round(v["sent_bytes"])}
                            for k, v in sorted(collectives.items())},
            **{k: round(v, 6) for k, v in times.items()},
            # Scanned layers: XLA counts one layer's FLOPs and bytes, so the roofline is no estimate at all.
            "est_mfu_overlapped": None if config.model.scan_layers else
            model_flops_chip / (times["step_s_overlapped"] * chip.peak_flops),
            "est_mfu_serial": None if config.model.scan_layers else
            model_flops_chip / (times["step_s_serial"] * chip.peak_flops),
            "estimate": "roofline from XLA's cost analysis and chip peaks; not a measurement"}


def max_batch(config, topology: str, devices: list, fits_at: bool, limit: int = 2 ** 24) -> tuple[int, list[dict]]:
    """(largest global batch that compiles and fits, the probes). Batches are multiples of the
    batch shards; doubles from the config's batch (`fits_at`: whether it fits; else bisects below
    it), up to `limit`, then bisects. Each probe is one compile. 0 when nothing down to one row per
    shard fits."""
    shards = math.prod(make_mesh(config.mesh, devices).shape[a] for a in BATCH_AXES)
    probes = []

    def fits(batch: int) -> bool:
        probe = config.copy_and_resolve_references()
        probe.batch_size = batch
        record = plan(probe, topology, devices)
        probes.append({k: record.get(k) for k in ("batch_size", "compiled", "fits", "total_bytes", "error")})
        logging.info("batch %d: %s", batch, probes[-1])
        return bool(record.get("compiled") and record.get("fits"))

    good, bad = (config.batch_size, None) if fits_at else (0, config.batch_size)
    while bad is None:
        if good * 2 > limit:
            return good, probes
        if fits(good * 2):
            good *= 2
        else:
            bad = good * 2
    while bad - good > shards:
        mid = (good + bad) // 2 // shards * shards
        if mid <= good:
            break
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good, probes


def plan_buckets(config, topology: str, devices: list) -> list[dict]:
    """One `plan` record per NaFlex length bucket (data.naflex): the step at (B_L, L) on `topology`."""
    schedule = schedule_from_config(config, len(devices))
    records = []
    for length, batch in zip(schedule.lengths, schedule.batch_sizes):
        bucket = config.copy_and_resolve_references()
        bucket.batch_size = batch
        records.append({"length": length, **plan(bucket, topology, devices, length=length)})
    return records


def describe(record: dict) -> str:
    """Readable lines for a record of `plan`."""
    if not record["compiled"]:
        return f"{record['topology']} batch {record['batch_size']}: XLA did not compile it: {record['error']}"
    gib = lambda n: f"{n / GiB:.2f} GiB"  # noqa: E731
    lines = [f"{record['topology']} ({record['chips']} x {record['chip']}), mesh {record['mesh']}, "
             f"batch {record['batch_size']}: compiled in {record['compile_s']} s",
             f"HBM per chip: arguments {gib(record['argument_bytes'])}, outputs {gib(record['output_bytes'])} "
             f"(aliased {gib(record['alias_bytes'])}), temporaries {gib(record['temp_bytes'])}, total "
             f"{gib(record['total_bytes'])} of {gib(record['hbm_bytes'])}: "
             + ("fits" if record["fits"] else "DOES NOT FIT"),
             f"FLOPs per chip per step: XLA {record['hlo_flops_per_chip']:.3e}, model {record['model_flops_per_chip']:.3e} "
             f"(ratio {record['hlo_over_model_flops']:.3f}"
             + (f", XLA's count x {record['loop_body_counted_once']['grad_accum_steps']} micro-batches)"
                if record["loop_body_counted_once"]["grad_accum_steps"] > 1 else ")")
             + (" [scanned layers: XLA counts one layer, so these FLOPs are low]"
                if record["loop_body_counted_once"]["scan_layers"] else "")]
    for kind, c in record["collectives"].items():
        lines.append(f"  {kind}: {c['count']} in the HLO, {c['bytes'] / 2**20:.1f} MiB moved, "
                     f"{c['sent_bytes'] / 2**20:.1f} MiB sent per chip")
    if record["est_mfu_serial"] is None:
        lines.append("estimate: none (scanned layers: XLA's cost analysis counts one layer; compile with "
                     "--config.model.scan_layers=False for FLOPs and a roofline)")
    else:
        lines.append(f"estimate (roofline, not measured): compute {record['compute_s'] * 1e3:.1f} ms, HBM "
                     f"{record['memory_s'] * 1e3:.1f} ms, ICI {record['collective_s'] * 1e3:.1f} ms per step; MFU "
                     f"{record['est_mfu_serial']:.0%} (no overlap) to {record['est_mfu_overlapped']:.0%} (full overlap)")
    for b in record.get("buckets", []):
        lines.append(f"NaFlex bucket L={b['length']}, batch {b['batch_size']}: " + (
            f"{b['total_bytes'] / GiB:.2f} GiB per chip" + ("" if b["fits"] else " DOES NOT FIT")
            if b["compiled"] else f"XLA did not compile it: {b['error']}"))
    if "max_batch" in record:
        lines.append(f"largest global batch that fits: {record['max_batch']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("plan", __doc__)
    parser.add_argument("--config", required=True, help="NAME[:ARGS] of a shipped config, or PATH.py[:ARGS]")
    parser.add_argument("--topology", required=True, help="e.g. v5e:2x2, v5e:16x16, v5p:4x4x4")
    parser.add_argument("--max_batch", action="store_true", help="also search the largest global batch that fits")
    parser.add_argument("--dump_hlo", default="", help="write the optimized HLO of the step to this file")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    setup_process()
    try:
        config = load_checked(args.config, split_overrides(rest))
        tpu_chip(args.topology)
        devices = topology_devices(args.topology)
        if config.data.naflex.lengths:  # NaFlex: one step per length bucket; the headline is the largest
            buckets = plan_buckets(config, args.topology, devices)
            record = {**max(buckets, key=lambda r: (not r["compiled"], r.get("total_bytes", 0))), "buckets": buckets}
        else:
            record = plan(config, args.topology, devices, args.dump_hlo)
        if args.max_batch:
            record["max_batch"], record["max_batch_probes"] = max_batch(
                config, args.topology, devices, record.get("compiled") and record.get("fits"))
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    record["config"] = " ".join([args.config, *rest])
    record["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(describe(record))
    print(json.dumps(record))
    return 0 if record["compiled"] and record["fits"] else 1


if __name__ == "__main__":
    sys.exit(main())
