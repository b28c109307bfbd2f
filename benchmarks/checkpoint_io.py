"""Time to save and restore the demo's train state: a local directory against a bucket on a local GCS emulator.

    python -m benchmarks.checkpoint_io [--config demo] [--repeats 3] [--dir /tmp/bigvl_checkpoint_io]

Builds the train state of `--config` by shape (bigvl.train.state.make_train_setup: params and
the optimizer's moments), then for each target — `--dir` on the local disk, and
`gs://bench-bucket/run` on `gcp-storage-emulator` (tests/helpers/gcs_emulator.py, a Python HTTP
server on this machine) — saves it `--repeats` times with the trainer's own calls
(bigvl.train.checkpoints.save, waiting for the async write) and restores the newest step
(`restore_latest`, onto the same shardings). The emulator measures the client side (orbax →
tensorstore's GCS driver over HTTP, with its conditional writes) plus a single-threaded Python
server, not Cloud Storage's bandwidth or latency. Prints one JSON line per target (median seconds).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time

import grain
import jax

from bigvl.config import load_config
from bigvl.parallel.mesh import make_mesh, rules_from_config
from bigvl.parallel.process import setup_process
from bigvl.train import checkpoints
from bigvl.train.state import make_train_setup


def time_target(workdir: str, state, shardings, repeats: int) -> dict:
    """{save_s, restore_s}: medians over `repeats` saves (each a new step) and restores of the newest."""
    iterator = iter(grain.MapDataset.range(10).to_iter_dataset())
    manager = checkpoints.make_manager(workdir, keep=repeats)
    abstract = checkpoints.abstract_with_shardings(jax.eval_shape(lambda: state), shardings)
    saves, restores = [], []
    for step in range(1, repeats + 1):
        start = time.perf_counter()
        checkpoints.save(manager, step, state, iterator, batch_size=8)
        manager.wait_until_finished()
        saves.append(time.perf_counter() - start)
        start = time.perf_counter()
        restored = checkpoints.restore_latest(manager, abstract, iterator, batch_size=8)
        jax.block_until_ready(restored)
        restores.append(time.perf_counter() - start)
    manager.close()
    return {"save_s": round(statistics.median(saves), 3), "restore_s": round(statistics.median(restores), 3),
            "save_all_s": [round(s, 3) for s in saves], "restore_all_s": [round(s, 3) for s in restores]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default="/tmp/bigvl_checkpoint_io")
    args = p.parse_args(argv)
    setup_process()

    from tests.helpers.gcs_emulator import GcsEmulator  # the emulator (the test extra), beside the package

    config = load_config(args.config)
    mesh = make_mesh(config.mesh)
    setup = make_train_setup(config, mesh, rules_from_config(config.sharding_rules))
    state = setup.compiled_init(jax.random.key(0))
    state_mb = sum(x.nbytes for x in jax.tree.leaves(state)) / 1e6
    shutil.rmtree(args.dir, ignore_errors=True)
    with GcsEmulator(bucket="bench-bucket") as gcs:
        os.environ.update(gcs.env)  # before the first gs:// use in this process
        for target, workdir in (("local", args.dir), ("emulated_bucket", "gs://bench-bucket/run")):
            result = time_target(workdir, state, setup.state_shardings, args.repeats)
            print(json.dumps({"benchmark": "checkpoint_io", "config": args.config, "target": target,
                              "state_mb": round(state_mb, 2), "leaves": len(jax.tree.leaves(state)), **result,
                              "repeats": args.repeats, "loadavg": [round(x, 2) for x in os.getloadavg()]}),
                  flush=True)
    shutil.rmtree(args.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
