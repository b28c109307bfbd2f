"""Where a train step's time goes, on both sides of the open_clip comparison: bigvl's compiled
step under `jax.profiler`, and (with `--python`) open_clip's eager step under `torch.profiler`.

    python -m benchmarks.profile_step [--arch S64|B16] [--batch 64] [--steps 3]
        [--python VENV/bin/python] [--top 10] [--max-load 0.75] [--wait-idle S] [--allow-busy]

bigvl: the step of `open_clip_compare` (`CompiledStep` of `bigvl_config(arch, batch)`), one
untimed step, then `--steps` steps in a `jax.profiler` trace. On the CPU, XLA 0.10.2's thunk
runtime records one event per executed HLO instruction (fusion, YNNPACK dot fusion, copy ...)
on the thread that ran it, split over the intra-op threads for parallel work. Per HLO
instruction: the wall time of the union of its events over all threads, per step; the
instruction is mapped to its `op_name` metadata (`compiled.as_text()`) and to a category
(`xla_category`). Concurrent instructions overlap, so the per-op times may sum to a little
more than the step.

open_clip: `open_clip_reference.py profile` (its venv), `torch.profiler` over `--steps` steps
after one untimed step; per aten op the self CPU time on the calling thread (torch runs its
intra-op threads inside the op), per step, with categories from `torch_category`.

Refuses a busy machine like `open_clip_compare` (`machine_load.LoadGate`, exit 3; `--allow-busy`
profiles anyway and flags it). Prints one JSON line per side ({"side", "step_s", "categories": {name: s}, "top": [...]})
and markdown tables: time per category and the top `--top` ops. The batch is resident on the
device on both sides, so "data transfer" is the host → device copy of nothing: it shows as
0 unless a side moves data inside the step.
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import jax
from jax.profiler import ProfileData

from benchmarks.machine_load import LoadGate, MachineBusy
from benchmarks.open_clip_compare import bigvl_config
from benchmarks.train_step import CompiledStep
from bigvl.parallel.process import setup_process

CATEGORIES = ("attention (QKᵀ, softmax, AV)", "matmul (dense layers)", "LayerNorm", "GELU", "loss",
              "optimizer update", "transpose / copy", "embedding / pooling", "data transfer", "other")

_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+) = .*? ([a-z][a-z0-9\-_]*)\(")
_COMP = re.compile(r"^(?:ENTRY\s+)?%([\w.\-]+) ")


def hlo_instructions(hlo_text: str) -> dict[str, dict]:
    """name → {"opcode", "op_name", "dot": calls a dot/convolution, "kind": library fusion kind}
    for every instruction of the optimized HLO text `hlo_text`."""
    comps: dict[str, list[tuple[str, str, str | None]]] = collections.defaultdict(list)
    instrs, current = {}, None
    for line in hlo_text.splitlines():
        head = _COMP.match(line)
        if head and line.rstrip().endswith("{"):
            current = head.group(1)
            continue
        m = _INSTR.match(line)
        if not m or current is None:
            continue
        name, opcode = m.groups()
        op_name = re.search(r'op_name="([^"]*)"', line)
        calls = re.search(r"calls=%([\w.\-]+)", line)
        kind = re.search(r'"kind":"(__\w+)"', line)
        comps[current].append((name, opcode, calls.group(1) if calls else None))
        instrs[name] = {"opcode": opcode, "op_name": op_name.group(1) if op_name else "",
                        "kind": kind.group(1) if kind else "", "calls": calls.group(1) if calls else None}

    memo: dict[str, bool] = {}

    def has_dot(comp: str) -> bool:
        if comp not in memo:
            memo[comp] = False
            memo[comp] = any(op in ("dot", "convolution") or (c is not None and has_dot(c))
                             for _, op, c in comps.get(comp, ()))
        return memo[comp]

    for info in instrs.values():
        info["dot"] = info["opcode"] in ("dot", "convolution") or bool(info["calls"] and has_dot(info["calls"]))
    return instrs


def xla_category(info: dict) -> str:
    """The category (one of CATEGORIES) of an HLO instruction from `hlo_instructions`."""
    op_name, opcode = info["op_name"], info["opcode"]
    last = op_name.split(";")[0].rsplit("/", 1)[-1]
    if opcode in ("copy-start", "copy-done", "infeed", "outfeed", "send", "recv"):
        return "data transfer"
    if "/optimizer" in op_name or op_name.startswith("optimizer"):
        return "optimizer update"
    if "/loss" in op_name:
        return "loss"
    if re.search(r"/attn/vmap|dot_product_attention", op_name):
        return "attention (QKᵀ, softmax, AV)"
    if info["dot"]:
        return "matmul (dense layers)"
    if opcode in ("copy", "transpose") or last in ("transpose", "copy", "reshape", "squeeze", "concatenate"):
        return "transpose / copy"
    if re.search(r"/ln_\w*/|/ln_pre/|/ln_final/|LayerNorm", op_name):
        return "LayerNorm"
    if "/mlp/" in op_name:
        return "GELU"
    if re.search(r"scatter|gather|take|_take|pool", op_name + opcode):
        return "embedding / pooling"
    return "other"


def torch_category(name: str) -> str:
    """The category (one of CATEGORIES) of a torch profiler op name."""
    n = name.lower()
    if re.search(r"scaled_dot_product|flash_attention|efficient_attention|(?<!log_)softmax", n):
        return "attention (QKᵀ, softmax, AV)"
    if re.search(r"log_softmax|nll_loss|cross_entropy", n):
        return "loss"
    if re.search(r"foreach|adam|optimizer|clip_grad|_fused|norm(?!al)", n) and "layer_norm" not in n:
        return "optimizer update"
    if re.search(r"addmm|\bmm\b|aten::mm|bmm|matmul|linear", n):
        return "matmul (dense layers)"
    if "layer_norm" in n:
        return "LayerNorm"
    if "gelu" in n:
        return "GELU"
    if re.search(r"copy_|clone|contiguous|transpose|permute|aten::t\b|view|reshape|cat\b|stack|expand|unbind", n):
        return "transpose / copy"
    if re.search(r"embedding|index|gather|argmax|select", n):
        return "embedding / pooling"
    if re.search(r"\bto\b|_to_copy|h2d|memcpy", n):
        return "data transfer"
    return "other"


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Total length (seconds) of the union of [start_ns, end_ns) intervals."""
    total, end = 0.0, -float("inf")
    for s, e in sorted(intervals):
        if e > end:
            total += e - max(s, end)
            end = e
    return total / 1e9


def op_wall_times(profile, instrs: dict[str, dict]) -> dict[str, float]:
    """HLO instruction name → seconds (union of its events over all threads) in the trace."""
    intervals = collections.defaultdict(list)
    for plane in profile.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for ev in line.events:
                if ev.name in instrs:
                    intervals[ev.name].append((ev.start_ns, ev.start_ns + ev.duration_ns))
    return {name: union_seconds(iv) for name, iv in intervals.items()}


def profile_bigvl(arch: str, batch: int, steps: int, top: int) -> dict:
    """bigvl's step under jax.profiler: {"side", "step_s", "categories", "top"} (seconds per step)."""
    bench = CompiledStep(bigvl_config(arch, batch))
    instrs = hlo_instructions(bench.compiled.as_text())
    bench.step()
    trace_dir = tempfile.mkdtemp(prefix="bigvl_profile_")
    times = []
    jax.profiler.start_trace(trace_dir)
    try:
        for _ in range(steps):
            times.append(bench.step()[0])
    finally:
        jax.profiler.stop_trace()
    [path] = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    per_op = {k: v / steps for k, v in op_wall_times(ProfileData.from_file(path), instrs).items()}
    rows = [{"op": op_kind(instrs[name]), "category": xla_category(instrs[name]), "s": s, "count": 1,
             "what": instrs[name]["kind"].strip("_") or instrs[name]["opcode"]} for name, s in per_op.items()]
    return summary("bigvl (XLA CPU)", statistics.median(times), rows, top, trace_dir=trace_dir)


def profile_open_clip(python: str, arch: str, batch: int, steps: int, top: int) -> dict:
    """open_clip's step under torch.profiler (in `python`'s venv), same record as profile_bigvl."""
    out = subprocess.run([python, os.path.join(os.path.dirname(os.path.abspath(__file__)), "open_clip_reference.py"),
                          "profile", "--arch", arch, "--batch", str(batch), "--steps", str(steps)],
                         check=True, capture_output=True, text=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    rows = [{"op": r["name"], "s": r["self_cpu_s"] / steps, "count": r["count"] / steps,
             "category": SCOPES.get(r.get("scope", ""), torch_category(r["name"])),
             "what": f"in {r['scope']}" if r.get("scope") else ""} for r in got["ops"]]
    return summary(f"open_clip (torch {got['torch']}, eager)", got["step_s"], rows, top)


def op_kind(info: dict) -> str:
    """An HLO instruction's op_name with the layer number dropped, so that the same op of every
    layer adds up (as torch's aten:: ops do): 'encode_image/.../block_*/mlp/fc1/dot_general'."""
    name = info["op_name"].split(";")[0].replace("jit(train_step)/", "").replace("TwoTower.", "")
    return re.sub(r"block_\d+", "block_*", name)[:110] or info["opcode"]


SCOPES = {"loss": "loss", "optimizer": "optimizer update"}


def summary(side: str, step_s: float, rows: list[dict], top: int, **extra) -> dict:
    """The side's record: seconds per category and the `top` ops (rows of the same op and
    category summed, `count` = instructions or calls per step), each per step."""
    cats = {c: 0.0 for c in CATEGORIES}
    merged: dict[tuple[str, str], dict] = {}
    for r in rows:
        cats[r["category"]] += r["s"]
        m = merged.setdefault((r["op"], r["category"]), {**r, "s": 0.0, "count": 0})
        m["s"] += r["s"]
        m["count"] += r["count"]
    rows = sorted(merged.values(), key=lambda r: -r["s"])
    return {"side": side, "step_s": step_s, "profiled_s": sum(cats.values()), "categories": cats,
            "top": rows[:top], "num_ops": len(rows), **extra}


def markdown(records: list[dict]) -> str:
    """A category table (one column per side) and a top-ops table per side."""
    head = "| category | " + " | ".join(r["side"] for r in records) + " |\n|---|" + "---:|" * len(records)
    lines = [head]
    for c in CATEGORIES:
        lines.append(f"| {c} | " + " | ".join(
            f"{r['categories'][c]:.3f} s ({100 * r['categories'][c] / r['profiled_s']:.0f} %)" for r in records) + " |")
    lines.append("| **sum of ops / step** | " + " | ".join(
        f"{r['profiled_s']:.3f} s / {r['step_s']:.3f} s" for r in records) + " |")
    for r in records:
        lines += ["", f"Top {len(r['top'])} ops, {r['side']} (s per step):", "",
                  "| op | category | s / step | per step | kind |", "|---|---|---:|---:|---|"]
        lines += [f"| `{t['op']}` | {t['category']} | {t['s']:.4f} | {t['count']:.0f}× | {t['what']} |"
                  for t in r["top"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_step",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=("S64", "B16"), default="S64")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps (after one untimed step)")
    parser.add_argument("--python", default="", help="the venv's python with torch + open_clip (the torch side)")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--max-load", type=float, default=0.75, help="refuse above this 1-min load average")
    parser.add_argument("--wait-idle", type=float, default=0.0, help="seconds to wait for an idle machine")
    parser.add_argument("--allow-busy", action="store_true", help="profile on a busy machine anyway (flagged)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    host_malloc = "reuse" if setup_process(level=logging.WARNING) else "default"  # before JAX starts, as bigvl.main runs
    gate, start = LoadGate(max_load=args.max_load), time.time()
    try:
        before = gate.check(args.allow_busy, args.wait_idle)
    except MachineBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    records = [profile_bigvl(args.arch, args.batch, args.steps, args.top)]
    if args.python:
        records.append(profile_open_clip(args.python, args.arch, args.batch, args.steps, args.top))
    load = {**gate.finish(before), "wall_s": round(time.time() - start, 1),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "host_malloc": host_malloc}
    if load["busy"]:
        print("WARNING: BUSY MACHINE — profile shares are distorted: " + "; ".join(load["busy_reasons"]),
              file=sys.stderr, flush=True)
    for r in records:
        print(json.dumps({"benchmark": "profile_step", "arch": args.arch, "batch_size": args.batch,
                          "steps": args.steps, **r, **load}), flush=True)
    print(f"\n{args.arch} CLIP, batch {args.batch}, float32, {len(os.sched_getaffinity(0))} cores; load average "
          f"{load['load_before'][0]:.2f} → {load['load_after'][0]:.2f} (1 min){', BUSY' if load['busy'] else ''}\n",
          flush=True)
    print(markdown(records), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
