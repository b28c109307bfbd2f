"""Every failure a run can meet (README "Reliability"), staged for real on the demo model:

    python -m experiments.reliability [--workdir workdirs/reliability]

Builds a small synthetic world (192 images, cached in the workdir), then runs
`python -m bigvl.main --config configs/demo.py` (12 steps, batch 16, no evals) in
subprocesses and stages each fault: SIGTERM, kill -9, every faulty-record kind, a
truncated shard, no readable shard, a corrupt chunk inside a shard, a truncated latest checkpoint, an
unwritable workdir, a full disk, non-finite losses, and config errors (unknown key,
wrong type, contradiction). Prints `scenario | expected | observed | pass` and exits 1
if any scenario fails. A few minutes on 2 CPU cores (compilations are cached between runs).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from bigvl.data.records import read_records
from bigvl.data.world import ensure_world
from bigvl.train.example_ids import ids_path
from bigvl.train.metrics_log import read_metrics
from tests.helpers.data_faults import RECORD_FAULTS, corrupt_chunk, truncate_shard, write_faulty_shard

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the clone (configs/ beside experiments/)
DEMO = os.path.join(ROOT, "configs", "demo.py")
TIMING = {"time", "step_time_s", "pairs_per_s", "model_tflops_per_s", "mfu", "eval_time_s"}
STEPS = 12  # the clean runs: batch 16, checkpoints every 3 steps
WORLD = dict(seed=0, num_train=192, num_train_shards=2, num_zeroshot=60, num_retrieval=40,
             num_hard_negatives=40, image_size=64)


@dataclasses.dataclass
class Row:
    scenario: str
    expected: str
    observed: str
    passed: bool | None  # None: could not be staged here (skipped)


@dataclasses.dataclass
class Outcome:
    """A finished `bigvl.main` run: exit status, its output (stdout + stderr), its workdir."""
    returncode: int
    output: str
    workdir: str

    def error_lines(self) -> list[str]:
        """stderr-style lines that are not logging chatter (INFO/WARNING) or progress."""
        return [line for line in self.output.splitlines() if line.strip()
                and not any(tag in line for tag in (" INFO ", " WARNING ", " DEBUG "))
                and not line.startswith("WARNING:") and not re.match(r"[IW]\d{4} ", line)]


class Harness:
    """Runs `python -m bigvl.main` on the small world with the scenario's overrides."""

    def __init__(self, workdir: str):
        self.root = os.path.abspath(workdir)
        os.makedirs(self.root, exist_ok=True)
        self.world = str(ensure_world(os.path.join(self.root, "world"), **WORLD))
        self.clean = [os.path.join(self.world, f"train-{i:05d}-of-00002.array_record") for i in range(2)]
        self.env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": os.path.join(self.root, "jax_cache"),
                    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0", "PYTHONUNBUFFERED": "1"}

    def overrides(self, **changes) -> dict:
        base = {"total_steps": STEPS, "batch_size": 16, "log_steps": 1, "ckpt_steps": 3, "eval_steps": 0,
                "report": False, "progress_bar": False, "world.build": False,
                "data.train_paths": self.clean, "data.tokenizer": os.path.join(self.world, "tokenizer.model"),
                "evals.zeroshot.split": "", "evals.zeroshot.classes": "", "evals.retrieval.split": "",
                "evals.long_retrieval.split": "", "evals.hard_negatives.split": "", "evals.pointing.split": "",
                "optim.warmup_steps": 2}
        return {**base, **{k.replace("__", "."): v for k, v in changes.items()}}

    def command(self, workdir: str, overrides: dict, config: str = DEMO) -> list[str]:
        def text(v):
            return str(v).lower() if isinstance(v, bool) else repr(list(v)) if isinstance(v, list) else str(v)
        return [sys.executable, "-m", "bigvl.main", "--config", config, "--workdir", workdir,
                *(f"--config.{k}={text(v)}" for k, v in overrides.items())]

    def fresh(self, name: str) -> str:
        path = os.path.join(self.root, name)
        shutil.rmtree(path, ignore_errors=True)
        return path

    def run(self, workdir: str, overrides: dict, config: str = DEMO, timeout: int = 600) -> Outcome:
        result = subprocess.run(self.command(workdir, overrides, config), cwd=ROOT, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return Outcome(result.returncode, result.stdout, workdir)

    def run_until(self, workdir: str, overrides: dict, ready: Callable[[], bool], sig: int,
                  timeout: int = 600) -> tuple[Outcome, bool]:
        """Starts a run, sends `sig` once `ready()` holds; (outcome, whether the signal was sent)."""
        os.makedirs(workdir, exist_ok=True)
        log_path = os.path.join(os.path.dirname(workdir), os.path.basename(workdir) + ".log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen(self.command(workdir, overrides), cwd=ROOT, env=self.env, text=True,
                                    stdout=log, stderr=subprocess.STDOUT)
            sent, deadline = False, time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                if ready():
                    proc.send_signal(sig)
                    sent = True
                    break
                time.sleep(0.02)
            try:
                proc.wait(timeout=max(1, deadline - time.monotonic()))
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        with open(log_path) as f:
            return Outcome(proc.returncode, f.read(), workdir), sent


# ----------------------------------------------------------------------------- reading runs
def logged_steps(workdir: str) -> list[int]:
    try:
        return [row["step"] for row in read_metrics(workdir) if "loss" in row]
    except (ValueError, OSError):  # a line being written right now
        return []


def metric_rows(workdir: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_metrics(workdir)]


def saved_steps(workdir: str) -> list[int]:
    path = os.path.join(workdir, "checkpoints")
    return sorted(int(p) for p in os.listdir(path) if p.isdigit()) if os.path.isdir(path) else []


def same_state(a: str, b: str, step: int) -> bool:
    """Whether the train states (params, optimizer, counters) saved at `step` are bitwise equal."""
    load = lambda w: jax.tree.leaves(ocp.StandardCheckpointer().restore(  # noqa: E731
        os.path.join(w, "checkpoints", str(step), "state")))
    left, right = load(a), load(b)
    return len(left) == len(right) and all(np.array_equal(np.asarray(x), np.asarray(y))
                                           for x, y in zip(left, right))


def ids_lines(workdir: str) -> list[str]:
    path = ids_path(workdir, 0, 1)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


def one_line_error(outcome: Outcome, fragment: str, code: int = 2) -> tuple[bool, str]:
    lines = outcome.error_lines()
    ok = outcome.returncode == code and len(lines) == 1 and fragment in lines[0] \
        and not saved_steps(outcome.workdir)
    shown = lines[-1] if lines else "(no error line)"
    return ok, f"exit {outcome.returncode}, {len(lines)} line(s): {shown[:110]}"


# ----------------------------------------------------------------------------- scenarios
def scenario_straight(h: Harness) -> list[Row]:
    out = h.run(h.fresh("straight"), h.overrides())
    steps = saved_steps(out.workdir)
    ok = out.returncode == 0 and steps[-1:] == [STEPS] and len(ids_lines(out.workdir)) == STEPS
    return [Row("reference run (no fault)", f"exit 0, {STEPS} steps, ids logged",
                f"exit {out.returncode}, checkpoints {steps}, {len(ids_lines(out.workdir))} id lines", ok)]


def _matches_straight(h: Harness, workdir: str) -> tuple[bool, str]:
    straight = os.path.join(h.root, "straight")
    params = same_state(straight, workdir, STEPS)
    rows = metric_rows(workdir) == metric_rows(straight)
    ids = ids_lines(workdir) == ids_lines(straight)
    steps = [int(line.split()[0]) for line in ids_lines(workdir)]
    once = steps == list(range(1, STEPS + 1))
    return params and rows and ids and once, (f"state {'bitwise equal' if params else 'DIFFERS'}, metrics "
                                              f"{'equal' if rows else 'DIFFER'}, ids {'equal' if ids else 'DIFFER'}"
                                              f"{', each step once' if once else ', steps repeat/missing'}")


def scenario_sigterm(h: Harness) -> list[Row]:
    workdir = h.fresh("sigterm")
    out, sent = h.run_until(workdir, h.overrides(), lambda: max(logged_steps(workdir), default=0) >= 2,
                            signal.SIGTERM)
    saved = saved_steps(workdir)
    stopped = saved[-1] if saved else None
    ok1 = sent and out.returncode == 0 and stopped is not None and stopped < STEPS \
        and f"preempted: saved step {stopped}" in out.output
    rows = [Row("SIGTERM mid-run", "checkpoint of the current step, exit 0",
                f"signal {'sent' if sent else 'NOT sent'}, exit {out.returncode}, checkpoints {saved}", ok1)]
    again = h.run(workdir, h.overrides())
    resumed = f"restored checkpoint at step {stopped}" in again.output
    same, detail = _matches_straight(h, workdir)
    rows.append(Row("  relaunch after SIGTERM", f"resumes at step {stopped}; = straight run",
                    f"exit {again.returncode}, {'resumed' if resumed else 'NOT resumed'}; {detail}",
                    again.returncode == 0 and resumed and same))
    return rows


def scenario_kill9(h: Harness) -> list[Row]:
    workdir = h.fresh("kill9")
    ready = lambda: 3 in saved_steps(workdir) and max(logged_steps(workdir), default=0) >= 4  # noqa: E731
    out, sent = h.run_until(workdir, h.overrides(), ready, signal.SIGKILL)
    killed_at = max(logged_steps(workdir), default=0)
    saved = saved_steps(workdir)
    again = h.run(workdir, h.overrides())
    resumed_from = saved[-1] if saved else 0
    resumed = f"restored checkpoint at step {resumed_from}" in again.output
    same, detail = _matches_straight(h, workdir)
    side = os.path.join(workdir, "metrics.superseded.jsonl")
    moved = sum(1 for _ in open(side)) if os.path.exists(side) else 0
    ok = sent and out.returncode == -9 and again.returncode == 0 and resumed and same \
        and moved >= max(0, killed_at - resumed_from)
    return [Row("kill -9 after a checkpoint, relaunch", "exact resume: = straight run, ids once each",
                f"killed at step {killed_at} (exit {out.returncode}), resumed from {resumed_from}; {detail}; "
                f"{moved} superseded metric lines kept aside", ok)]


def scenario_data_faults(h: Harness) -> list[Row]:
    data = os.path.join(h.root, "faulty_data")
    os.makedirs(data, exist_ok=True)
    good = read_records(h.clean[0]) + read_records(h.clean[1])[:24]  # 120 records
    faulty, truncated, chunked = (os.path.join(data, f"{n}.array_record") for n in ("faulty", "truncated", "chunk"))
    where = write_faulty_shard(good, faulty)  # 128 records, 8 faulty
    truncate_shard(h.clean[0], truncated)
    bad_chunk = corrupt_chunk(h.clean[1], chunked, at=0.4, length=6000)  # 96 records
    steps = (128 + 96) // 16  # exactly one epoch: every record read once
    workdir = h.fresh("data_faults")
    out = h.run(workdir, h.overrides(total_steps=steps, data__train_paths=[faulty, truncated, chunked],
                                     data__caption_strategy="recap", ckpt_steps=100))
    rows_logged = [r for r in metric_rows(workdir) if "data_skipped" in r]
    last = rows_logged[-1] if rows_logged else {}
    counted = last.get("data_skipped")
    want = len(RECORD_FAULTS) + len(bad_chunk)
    done = out.returncode == 0 and last.get("step") == steps
    rows = []
    for kind, index in where.items():
        named = f"skipping record #{index}:" in out.output
        reason = next((line.split(f"#{index}: ", 1)[-1] for line in out.output.splitlines()
                       if f"skipping record #{index}:" in line), "")
        rows.append(Row(f"data: {kind}", "skipped, named, counted; run completes",
                        f"{'named' if named else 'NOT named'} ({reason[:60]})", done and named))
    chunk_named = all(f"{chunked} position {p}) unreadable" in out.output for p in bad_chunk)
    rows.append(Row("data: corrupt chunk inside a shard", f"its {len(bad_chunk)} records skipped, named",
                    f"{'named' if chunk_named else 'NOT named'} with file and position", done and chunk_named))
    shard_named = f"leaving out unreadable shard {truncated}" in out.output
    rows.append(Row("data: truncated shard", "warned with its name, left out; run completes",
                    f"{'named' if shard_named else 'NOT named'}, data_unreadable_shards "
                    f"{last.get('data_unreadable_shards')}", done and shard_named
                    and last.get("data_unreadable_shards") == 1))
    rows.append(Row("  data_skipped metric (one epoch)", f"= {want} in metrics.jsonl at step {steps}",
                    f"exit {out.returncode}, data_skipped {counted}", done and counted == want))
    return rows


def scenario_truncated_checkpoint(h: Harness) -> list[Row]:
    workdir = h.fresh("truncated_ckpt")
    shutil.copytree(os.path.join(h.root, "straight"), workdir)
    state_dir = os.path.join(workdir, "checkpoints", str(STEPS), "state")
    files = [os.path.join(r, f) for r, _, fs in os.walk(state_dir) for f in fs]
    with open(max(files, key=os.path.getsize), "r+b") as f:
        f.truncate(100)
    out = h.run(workdir, h.overrides())
    previous = STEPS - 3
    fell_back = f"restored checkpoint at step {previous}" in out.output
    same, detail = _matches_straight(h, workdir)
    aside = os.path.isdir(os.path.join(workdir, "checkpoints", f"{STEPS}.corrupt"))
    return [Row("truncated latest checkpoint", f"falls back to step {previous}, retrains to = straight",
                f"exit {out.returncode}, {'fell back' if fell_back else 'did NOT fall back'}, "
                f"{'moved aside' if aside else 'not moved'}; {detail}",
                out.returncode == 0 and fell_back and aside and same)]


def _unwritable_dir(h: Harness) -> str | None:
    path = os.path.join(h.root, "read_only")
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o555)
    try:
        with open(os.path.join(path, "probe"), "w"):
            pass
        os.remove(os.path.join(path, "probe"))  # root writes anyway: try a read-only file system
    except OSError:
        return os.path.join(path, "run")
    for candidate in ("/sys/bigvl-reliability", "/proc/bigvl-reliability"):
        try:
            os.makedirs(candidate)
            shutil.rmtree(candidate, ignore_errors=True)
        except OSError:
            return candidate
    return None


def scenario_start_up_errors(h: Harness) -> list[Row]:
    rows = []
    unwritable = _unwritable_dir(h)
    if unwritable is None:
        rows.append(Row("unwritable workdir", "one-line error, exit 2", "no unwritable place to test", None))
    else:
        ok, seen = one_line_error(h.run(unwritable, h.overrides()), "cannot write")
        rows.append(Row("unwritable workdir", "one-line error, exit 2, nothing compiled", seen, ok))
    empty_shard = os.path.join(h.root, "empty-00000-of-00001.array_record")
    open(empty_shard, "wb").close()
    cases = [
        ("no readable train shard (zero bytes)", {"data.train_paths": [empty_shard]},
         "none of the 1 shards is readable"),
        ("full disk (min_free_disk_gb=1e9)", dict(min_free_disk_gb=1e9), "free on its disk"),
        ("unknown key optim.lrr", {"optim.lrr": 0.1}, "did you mean 'optim.lr'"),
        ("wrong type: batch_size=16.5", dict(batch_size=16.5), "'batch_size' expects int"),
        ("contradiction: sigmoid loss, no bias", {"loss.name": "sigmoid"}, "model.bias_init"),
        ("contradiction: partial budget > context", {"data.caption_strategy": "partial",
                                                     "data.partial_max_tokens": 64}, "partial_max_tokens"),
    ]
    for name, changes, fragment in cases:
        ok, seen = one_line_error(h.run(h.fresh("config_error"), {**h.overrides(), **changes}), fragment)
        rows.append(Row(name, "one-line error, exit 2, nothing compiled", seen, ok))
    bad_config = os.path.join(h.root, "wrong_type_config.py")
    with open(bad_config, "w") as f:
        f.write(f"import importlib.util\n_spec = importlib.util.spec_from_file_location('demo', {DEMO!r})\n"
                "_demo = importlib.util.module_from_spec(_spec)\n_spec.loader.exec_module(_demo)\n\n\n"
                "def get_config(arg=''):\n    c = _demo.get_config()\n    c.batch_size = '16'\n    return c\n")
    ok, seen = one_line_error(h.run(h.fresh("config_error"), h.overrides(), config=bad_config),
                              "'batch_size' expects int, got str")
    rows.append(Row("wrong type in a config file", "one-line error, exit 2, nothing compiled", seen, ok))
    return rows


def scenario_nonfinite(h: Harness) -> list[Row]:
    out = h.run(h.fresh("nan_stop"), h.overrides(optim__lr="inf"))
    ok, seen = one_line_error(out, "step 1: loss, gradient or updated params not finite", code=1)
    rows = [Row("NaN loss, nonfinite=stop (lr=inf)", "stops at once naming step 1, no checkpoint of it",
                seen, ok)]
    out = h.run(h.fresh("nan_skip"), h.overrides(optim__lr="inf", nonfinite="skip"))
    last = ([r for r in metric_rows(out.workdir) if "skipped_steps" in r] or [{}])[-1]
    ok = out.returncode == 0 and last.get("step") == STEPS and last.get("skipped_steps") == STEPS
    rows.append(Row("NaN loss, nonfinite=skip (lr=inf)", f"completes, skipped_steps = {STEPS}",
                    f"exit {out.returncode}, step {last.get('step')}, skipped_steps {last.get('skipped_steps')}",
                    ok))
    return rows


SCENARIOS = (scenario_straight, scenario_sigterm, scenario_kill9, scenario_truncated_checkpoint,
             scenario_data_faults, scenario_nonfinite, scenario_start_up_errors)


def format_table(rows: list[Row]) -> str:
    """The rows as a text table: scenario | expected | observed | pass."""
    cells = [("scenario", "expected", "observed", "pass")] + [
        (r.scenario, r.expected, r.observed, {True: "PASS", False: "FAIL", None: "skip"}[r.passed]) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = [" | ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip() for c in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.reliability", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="workdirs/reliability", help="scratch space (reused)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    harness = Harness(args.workdir)
    rows: list[Row] = []
    for scenario in SCENARIOS:
        t = time.perf_counter()
        try:
            rows.extend(scenario(harness))
        except Exception as e:  # noqa: BLE001 (a broken scenario is a failed row, not a crash)
            rows.append(Row(scenario.__name__, "runs", f"harness error: {type(e).__name__}: {e}"[:200], False))
        print(f"[{time.perf_counter() - t:6.1f} s] {scenario.__name__}", file=sys.stderr, flush=True)
    print(format_table(rows))
    failed = [r for r in rows if r.passed is False]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} rows pass ({sum(r.passed is None for r in rows)} skipped); "
          f"wall time {time.perf_counter() - t0:.0f} s")
    with open(os.path.join(harness.root, "reliability.json"), "w") as f:
        json.dump([dataclasses.asdict(r) for r in rows], f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
