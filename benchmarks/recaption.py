"""Recaption throughput: captions/s with the KV cache on and off, on 1 and 8 (simulated) devices.

    python -m benchmarks.recaption [--config configs/coca_demo.py] [--workdir RUN]
        [--devices 1,8] [--captions 256] [--batch 64] [--max-length 32] [--method greedy]

One subprocess per device count (XLA_FLAGS=--xla_force_host_platform_device_count=N on a
CPU host; on an accelerator host the real devices, `--devices` then only names the runs).
Each builds the config's captioner (random init, or a trained `--workdir`) and times
`bigvl.inference.recaption.Recaptioner` (batched decoding sharded over the process's
devices, detokenising included; no shard I/O) on `--captions` random images, after one
compiling call, with use_cache on and off. EOS is disabled (`eos_id=-1`) so every caption
runs `--max-length` steps on both paths. Prints one JSON line per (devices, use_cache)
setting, then a side-by-side line. Simulated devices share the host's cores: on a CPU
they show the sharding works, not a speed-up.
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
import numpy as np

from bigvl.config import load_config
from bigvl.data.tokenizer import Tokenizer
from bigvl.inference.decoding import DecodeConfig, make_captioner
from bigvl.inference.recaption import Recaptioner, local_mesh, local_params
from bigvl.inference.run import load_run
from bigvl.models import build_model
from bigvl.parallel.mesh import rules_from_config


def worker(args) -> list[dict]:
    """Runs in the subprocess: times both cache settings on this process's devices."""
    if args.workdir:
        run = load_run(args.workdir)
        config, model, params = run.config, run.model, run.params
    else:
        config = load_config(args.config)
        model = build_model(config.model)
    size, length = config.model.image.image_size, config.model.text.context_length
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.captions, size, size, 3)).astype(np.uint8)
    if not args.workdir:
        params = nn.unbox(jax.jit(model.init)(jax.random.key(0), images[:1], np.zeros((1, length), np.int32))
                          ["params"])
    tokenizer = Tokenizer(config.data.tokenizer) if os.path.exists(config.data.tokenizer) else None
    mesh = local_mesh()
    captioner = make_captioner(model, tokenizer, config.model, mesh, rules_from_config(config.sharding_rules),
                               args.batch)
    if tokenizer is None:  # no world built: count ids instead of detokenising
        captioner.tokenizer = type("Ids", (), {"decode": staticmethod(lambda row: " ".join(map(str, row))),
                                               "encode": staticmethod(lambda texts, n: np.full(
                                                   (len(texts), n), 5, np.int32))})()
    conds = ["a red circle"] * args.captions if captioner.needs_condition else None
    keys = np.stack([np.array([0, i], np.uint32) for i in range(args.captions)])
    lines = []
    for use_cache in (True, False):
        cfg = DecodeConfig(method=args.method, max_length=args.max_length, beam_size=args.beam_size,
                           use_cache=use_cache, eos_id=-1)
        decoder = Recaptioner(captioner, local_params(params, mesh), mesh, cfg, args.batch)
        decoder(images[:decoder.batch_size], conds[:decoder.batch_size] if conds else None,
                keys[:decoder.batch_size])  # compile
        start = time.perf_counter()
        decoder(images, conds, keys)
        seconds = time.perf_counter() - start
        lines.append({"benchmark": "recaption", "devices": jax.device_count(), "use_cache": use_cache,
                      "kind": config.model.kind, "method": args.method, "batch": decoder.batch_size,
                      "max_length": args.max_length, "captions": args.captions, "seconds": round(seconds, 3),
                      "captions_per_second": round(args.captions / seconds, 2),
                      "platform": jax.devices()[0].platform, "cpu_count": os.cpu_count()})
    return lines


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/coca_demo.py")
    parser.add_argument("--workdir", default="", help="a trained captioner to take params from (else random init)")
    parser.add_argument("--devices", default="1,8")
    parser.add_argument("--captions", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--method", default="greedy", choices=("greedy", "beam", "sample"))
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        for line in worker(args):
            print(json.dumps(line), flush=True)
        return []
    lines = []
    for n in [int(d) for d in args.devices.split(",") if d]:
        env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                                          f"--xla_force_host_platform_device_count={n}".strip()}
        cmd = [sys.executable, "-m", "benchmarks.recaption", "--worker", "--config", args.config,
               "--workdir", args.workdir, "--captions", str(args.captions), "--batch", str(args.batch),
               "--max-length", str(args.max_length), "--method", args.method, "--beam-size", str(args.beam_size)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"benchmark worker with {n} devices failed:\n{out.stderr[-3000:]}")
        for text in out.stdout.splitlines():
            if text.startswith("{"):
                lines.append(json.loads(text))
                print(text, flush=True)
    side = {f"{line['devices']}dev_{'cache' if line['use_cache'] else 'nocache'}": line["captions_per_second"]
            for line in lines}
    print(json.dumps({"benchmark": "recaption", "captions_per_second": side}))
    return lines


if __name__ == "__main__":
    main()
