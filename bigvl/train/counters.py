"""Counters of the train loop kept in the train state, so a resumed run logs what an
uninterrupted one would: skipped data records, and the loss of the current log window.

The log line's `loss` is the mean loss over the finite steps of the window (the steps
since the previous log step). Kept in host memory, a window cut by a checkpoint would
restart empty on resume and log a different mean; kept in the state, it is saved with
the params and restored with them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def initial_counters() -> dict[str, jax.Array]:
    """Scalars: data_skipped int32 (faulty records replaced so far, all hosts),
    window_loss_sum float32 and window_finite_steps int32 (the current log window)."""
    return {"data_skipped": jnp.zeros((), jnp.int32),
            "window_loss_sum": jnp.zeros((), jnp.float32),
            "window_finite_steps": jnp.zeros((), jnp.int32)}


def update_counters(state, batch, loss: jax.Array, finite: jax.Array,
                    log_steps: int, total_steps: int) -> tuple[dict, dict]:
    """(counters for the new state, metrics) after the step `state["step"] + 1`.

    batch["skipped_records"]: int [B] (1 where the slot's own record was faulty).
    Metrics: data_skipped (running total), window_loss_sum and window_finite_steps of
    the window ending at this step; the state's window is emptied on a log step
    (a multiple of log_steps, or total_steps).
    """
    step = state["step"] + 1
    window_sum = state["window_loss_sum"] + jnp.where(finite, loss.astype(jnp.float32), 0.0)
    window_n = state["window_finite_steps"] + finite.astype(jnp.int32)
    data_skipped = state["data_skipped"] + jnp.sum(batch["skipped_records"]).astype(jnp.int32)
    log_now = (step % log_steps == 0) | (step == total_steps)
    counters = {"data_skipped": data_skipped,
                "window_loss_sum": jnp.where(log_now, 0.0, window_sum),
                "window_finite_steps": jnp.where(log_now, 0, window_n)}
    metrics = {"data_skipped": data_skipped, "window_loss_sum": window_sum,
               "window_finite_steps": window_n}
    return counters, metrics


def window_mean_loss(metrics: dict[str, float]) -> float:
    """Pops the window fields from host-side metrics; their mean loss (NaN if no finite step)."""
    total, count = metrics.pop("window_loss_sum"), metrics.pop("window_finite_steps")
    return total / count if count else float("nan")
