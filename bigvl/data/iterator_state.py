"""The grain iterator state of this host's training stream at a given step, from the step alone.

The stream is defined globally (bigvl/data/pipeline.py): global batch s holds positions
[s·B, (s+1)·B) and host h of N reads its B/N of them, so where a host stands after s steps
depends only on (s, B/N), not on how many hosts were there before. That is what lets a run
checkpointed with N processes resume with M (elastic resume, bigvl/train/checkpoints.py):
the saved per-host grain states are for N hosts and cannot be reused, so the state is
rebuilt here instead (grain#938 and maxtext#1760 describe the same problem).

Two iterator layouts exist (grain 0.2.x), both handled:
- in process (`data.num_workers = 0`): the batch iterator's state is {"next_index": s·b}
  (b = B / hosts, counted in examples);
- `mp_prefetch` with W workers: worker w produces batches w, w + W, ...; after s batches it
  has produced ceil((s - w) / W) of them, its own state is {"next_index": that · b}, and the
  round robin stands at worker s mod W.
Any other layout raises ValueError (a grain upgrade changed it: resume with the original
process count, or extend this function).
"""
from __future__ import annotations

import copy
from typing import Any


def state_at_step(fresh_state: dict[str, Any], step: int, local_batch: int) -> dict[str, Any]:
    """The state of a host's batch iterator after `step` batches of `local_batch` examples.

    fresh_state: `iterator.get_state()` of a new iterator of the same pipeline (the template:
    its layout and the fields this function does not move). Returns a new dict for `set_state`.
    """
    if step < 0 or local_batch < 1:
        raise ValueError(f"step {step} and local batch {local_batch} must be >= 0 and >= 1")
    state = copy.deepcopy(fresh_state)
    if set(state) == {"next_index"}:
        state["next_index"] = step * local_batch
        return state
    workers = state.get("iterators_in_use_states")
    if (isinstance(workers, list) and "next_index_in_cycle" in state and not state.get("future_states")
            and all(isinstance(w, dict) and set(w) == {"next_index"} for w in workers)):
        count = len(workers)
        for w, worker in enumerate(workers):
            worker["next_index"] = max(0, -(-(step - w) // count)) * local_batch
        state["next_index_in_cycle"] = step % count
        return state
    raise ValueError(f"the data iterator's state has a layout this bigvl cannot place at step {step} "
                     f"(keys {sorted(state)}): resume with the process count the checkpoint was written with")
