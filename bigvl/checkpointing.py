"""Async orbax checkpoints of the train state and the grain iterator, and resume."""
from __future__ import annotations

import logging
import os

import grain
import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


def make_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    """A CheckpointManager over `workdir/checkpoints` saving asynchronously."""
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True,
                                           create=True)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                                 options=options)


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator, force: bool = False) -> None:
    """Saves state (params, optimizer, step) and the iterator position under `step`."""
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator)), force=force)


def restore_latest(manager: ocp.CheckpointManager, abstract_state, data_iterator):
    """Restores the newest checkpoint onto `abstract_state`'s shardings; None if there is none.

    `abstract_state` is a pytree of jax.ShapeDtypeStruct with shardings; the iterator is
    restored in place.
    """
    step = manager.latest_step()
    if step is None:
        return None
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=grain.checkpoint.CheckpointRestore(data_iterator)))
    log.info("restored checkpoint at step %d", step)
    return restored["state"]


def abstract_with_shardings(shapes, shardings):
    """ShapeDtypeStructs carrying shardings: the restore target, nothing allocated."""
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
