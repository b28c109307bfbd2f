"""SigLIP 2's EMA teacher: the stage of training with self-distillation and masked prediction.

The train state carries `teacher`, a params-shaped copy (the model's params and the prototype heads
at `params["self_distill"]`), sharded like the params and checkpointed with them. Training runs
one jitted step in which the stage is data (`jax.lax.cond` on the step counter), not two compiled
steps: before the start step the plain step runs and the teacher follows the student exactly
(teacher = the updated params), so at the start step the teacher IS the student, as SigLIP 2
initialises it (§2.3, "at 80 % of training completion"); from then on the stage-2 branch runs:

    teacher targets  (no gradient) the teacher's image tower on the global view → prototype logits:
                     teacher_global_logits [B,K] (pooled), teacher_patch_logits [B,N,K] (patch tokens)
    patch_mask       bool [B,N], mask_ratio·N patches per image, drawn from (seed, step)
    the student      local crops and the masked global view (Objective.student_distill_outputs)
    after the update teacher ← m·teacher + (1 − m)·params   (optax.incremental_update, m = ema_momentum)

`lax.cond` executes one branch at run time, so the steps before the start cost what a plain step
costs (the host still makes the local crops: the batch's shape does not change), and a resumed
run compiles the same single program whichever side of the start it resumes on.
"""
from __future__ import annotations

import dataclasses

import jax
import optax

from bigvl.losses.masked_prediction import random_patch_mask
from bigvl.losses.objective import Objective, image_tower, teacher_enabled


def start_step(loss_cfg, total_steps: int) -> int:
    """The first step (0-based step counter value) of the stage: round(start_fraction · total_steps)."""
    return int(round(loss_cfg.self_distill.start_fraction * total_steps))


@dataclasses.dataclass(frozen=True)
class TeacherStage:
    """The stage's constants (see the module docstring); `from_config` gives None when it is off."""
    start: int
    momentum: float
    mask_ratio: float
    seed: int

    @classmethod
    def from_config(cls, config) -> "TeacherStage | None":
        loss = config.loss
        if not teacher_enabled(loss):
            return None
        return cls(start=start_step(loss, config.total_steps), momentum=float(loss.self_distill.ema_momentum),
                   mask_ratio=float(loss.masked_prediction.mask_ratio), seed=int(config.seed))

    def targets(self, objective: Objective, model, teacher: dict, batch: dict, step: jax.Array) -> dict:
        """The stage-2 batch keys: patch_mask bool [B,N] (drawn from fold_in(key(seed), step); marks the stage) and,
        for the terms that are on, teacher_global_logits f32 [B,K] (self-distillation) and teacher_patch_logits
        f32 [B,N,K] (masked prediction), gradient stopped."""
        pooled, tokens = image_tower(model, teacher, batch["image"])
        heads = {"params": teacher["self_distill"]}
        b, n = tokens.shape[:2]
        out = {"patch_mask": random_patch_mask(jax.random.fold_in(jax.random.key(self.seed), step), b, n,
                                               self.mask_ratio)}
        weights = objective.weights()
        if "self_distill_loss" in weights:
            out["teacher_global_logits"] = jax.lax.stop_gradient(objective.heads.apply(heads, pooled))
        if "masked_prediction_loss" in weights:  # [B,N,K]: the stage's largest tensor, only when its term is on
            out["teacher_patch_logits"] = jax.lax.stop_gradient(objective.heads.apply(heads, tokens))
        return out

    def next_teacher(self, teacher: dict, params: dict, active: bool) -> dict:
        """The teacher after a step: the EMA m·teacher + (1 − m)·params in the stage, the params before it."""
        if not active:
            return params
        return optax.incremental_update(params, teacher, step_size=1.0 - self.momentum)

