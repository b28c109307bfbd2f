"""Async orbax checkpoints of the train state and the grain iterator, resume, and preemption.

The layout of a step and its format version: bigvl/inference/checkpoint_format.py.

Elastic resume: a step restores onto any mesh (orbax reshards the state to the target's
shardings) and any process count with the same global batch. Grain saves one iterator state
per process (`data/process_<i>-of-<n>.json`); when the checkpoint was written by another
process count, the state is restored alone and each host's iterator is placed at the
restored step (bigvl/data/iterator_state.py: the stream is global, so its position is the
step), which gives the same examples per step as an uninterrupted run. A changed global
batch cannot be honoured (every later batch would hold other examples): CheckpointLayoutError.
"""
from __future__ import annotations

import logging
import signal
import threading

import grain
import jax
import orbax.checkpoint as ocp

from bigvl.data.iterator_state import state_at_step
from bigvl.inference.checkpoint_format import META_ITEM, CheckpointVersionError, check_format, meta, read_meta
from bigvl.parallel.storage import run_path

log = logging.getLogger(__name__)


def make_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    """A CheckpointManager over `workdir/checkpoints` saving asynchronously.

    Orbax writes each step into `<step>.orbax-checkpoint-tmp-*` and renames it when
    complete; the manager lists only integer-named step directories, so a half-written
    save (or a step moved aside by `restore_latest`) is never seen as a checkpoint. `workdir` may
    be a bucket (`gs://...`): orbax writes there itself, and marks a finished step with a commit
    file instead of the rename (what orbax does on GCS).
    """
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True,
                                           create=True)
    return ocp.CheckpointManager(run_path(workdir) / "checkpoints", options=options)


class CheckpointLayoutError(ValueError):
    """A checkpoint this run cannot continue: written with another global batch size."""


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator, force: bool = False,
         batch_size: int | None = None) -> None:
    """Saves state (params, optimizer, step) and the iterator position under `step`.

    batch_size: the global batch, recorded (with the process count) in the meta item so a
    resume can check it. A step that is already saved (e.g. a preemption right after a
    periodic save) is left as is.
    """
    if step in manager.all_steps():
        return
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator),
        **{META_ITEM: ocp.args.JsonSave(meta(**({} if batch_size is None else {
            "batch_size": int(batch_size), "process_count": jax.process_count()})))}), force=force)


def _short(error: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, cut to `limit` characters (tensorstore errors are huge)."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _move_aside(manager: ocp.CheckpointManager, step: int) -> str:
    """Renames step dir `N` to `N.corrupt[-k]` (kept for inspection, invisible to the manager)."""
    path = manager.directory / str(step)
    target, k = path.with_name(f"{step}.corrupt"), 0
    while target.exists():
        k += 1
        target = path.with_name(f"{step}.corrupt-{k}")
    if jax.process_index() == 0:
        path.rename(target)  # in a bucket: a copy of every object, then the originals deleted
    return str(target)


def _written_by_other_process_count(step_dir) -> bool:
    """True when `data/` holds iterator states of another process count and none for this one."""
    data = step_dir / "data"
    mine = data / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    return not mine.exists() and any(data.glob("process_*-of-*.json")) if data.exists() else False


def _check_layout(step_dir, batch_size: int | None) -> None:
    saved = read_meta(step_dir).get("batch_size")
    if batch_size is not None and saved is not None and int(saved) != int(batch_size):
        raise CheckpointLayoutError(
            f"checkpoint {step_dir} was written with batch_size {saved}; this run has batch_size "
            f"{batch_size}. Resuming needs the same global batch (the mesh and the process count "
            f"may change): pass --config.batch_size={saved}, or start a new workdir")


def restore_latest(manager: ocp.CheckpointManager, abstract_state, data_iterator, batch_size: int | None = None):
    """Restores the newest checkpoint that restores cleanly; None if there is none.

    batch_size: this run's global batch. When given, a step written with another one raises
    CheckpointLayoutError (one line, nothing moved aside), and a step written by another
    process count is restored elastically (the iterator placed at the restored step).

    `abstract_state` is a pytree of jax.ShapeDtypeStruct with shardings; the iterator is
    restored in place. A step that fails to restore (truncated or missing files, bad
    JSON, an orbax/tensorstore error) is logged, moved aside to `<step>.corrupt` so a
    later save of that step can succeed, and the next older step is tried. Raises
    RuntimeError, listing every step and its error, when checkpoints exist but none restores;
    CheckpointVersionError (one line: the step's format version and the supported ones) for a
    step written in an unknown format, which is left in place.
    """
    failures = []
    for step in sorted(manager.all_steps(), reverse=True):
        step_dir = manager.directory / str(step)
        try:
            check_format(step_dir)
            _check_layout(step_dir, batch_size)
            if batch_size is not None and _written_by_other_process_count(step_dir):
                restored = manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state)))
                local_batch = batch_size // jax.process_count()
                data_iterator.set_state(state_at_step(data_iterator.get_state(), step, local_batch))
                if hasattr(data_iterator, "start_prefetch"):  # as grain's own restore does
                    data_iterator.start_prefetch()
                log.info("checkpoint step %d was written by another process count: the data iterator is "
                         "placed at that step (%d examples per host per step)", step, local_batch)
            else:
                restored = manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    data=grain.checkpoint.CheckpointRestore(data_iterator)))
        except (CheckpointVersionError, CheckpointLayoutError):  # not damaged: leave it in place
            raise
        except Exception as e:  # noqa: BLE001 (orbax, tensorstore, json and OS errors all differ)
            reason = _short(e)
            failures.append((step, reason))
            log.warning("checkpoint %s does not restore (%s); trying the previous one",
                        manager.directory / str(step), reason)
            continue
        if failures:
            for bad_step, _ in failures:
                log.warning("moved unrestorable checkpoint step %d to %s", bad_step,
                            _move_aside(manager, bad_step))
            manager.reload()
        log.info("restored checkpoint at step %d", step)
        return restored["state"]
    if failures:
        raise RuntimeError(f"no checkpoint in {manager.directory} restores (not starting from "
                           f"scratch over them): " + "; ".join(f"step {s}: {r}" for s, r in failures))
    return None


class PreemptionWatcher:
    """Notices SIGTERM on a single host; elsewhere defers to orbax's preemption sync point.

    Use as a context manager around the train loop and ask `.reached(manager, step)` after
    each step. On one process, JAX's preemption sync (what `manager.reached_preemption`
    uses) is not running, so a SIGTERM handler sets a flag; the previous handler comes
    back on exit. With several processes no handler is installed: JAX's own SIGTERM
    notifier makes all hosts agree on the step to save at.
    """

    def __init__(self):
        self.signalled = False
        self._installed, self._previous = False, None

    def _on_sigterm(self, signum, frame):  # only sets a flag: safe at any point of the loop
        self.signalled = True

    def __enter__(self) -> "PreemptionWatcher":
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False

    def reached(self, manager: ocp.CheckpointManager, step: int) -> bool:
        """True once SIGTERM arrived (single host) or all hosts reached the preemption sync point."""
        return self.signalled or manager.reached_preemption(step)


def abstract_with_shardings(shapes, shardings):
    """ShapeDtypeStructs carrying shardings: the restore target, nothing allocated."""
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
