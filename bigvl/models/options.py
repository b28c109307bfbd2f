"""`ModelOptions`: how a model computes, as one frozen value every module takes whole.

These are the `config.model` keys that change how the numbers are computed (dtypes, remat,
attention kernel, the Dense layers' weight gradient, scanned blocks, the pooled last block) but
not the function of the weights: a run may change them from the run it starts from
(`bigvl.train.init_check.MAY_DIFFER`). `from_config` checks and resolves them once, in
`build_model`; the modules read `options.<name>`. What the model *is* (sizes, pooling,
activation, LayerNorm eps, pixel range) stays in each module's own fields.

Frozen and hashable, so a linen module can hold it as an attribute.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from bigvl.models.matmul import resolve_weight_grad

DTYPES = ("float32", "bfloat16", "float16")
ATTENTION_IMPLS = ("", "xla", "cudnn")
REMAT_POLICIES = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable", "nothing_saveable",
                  "everything_saveable")


def config_choice(value: Any, choices: tuple, key: str) -> Any:
    """`value` if it is one of `choices`, else ValueError naming the key 'model.<key>'."""
    if value not in choices:
        raise ValueError(f"config key 'model.{key}': {value!r} is not one of {choices}")
    return value


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """The execution options of every model module (defaults: float32, no remat, XLA autodiff)."""
    dtype: Any = jnp.float32  # compute dtype
    param_dtype: Any = jnp.float32
    remat: str = "none"  # REMAT_POLICIES (transformer.remat_policy)
    attention_impl: str | None = None  # 'xla' | 'cudnn' | None (by backend: transformer.attention_implementation)
    weight_grad: str = "xla"  # how the Dense layers' kernel gradients are computed: bigvl.models.matmul
    scan_layers: bool = False  # the towers' encoder blocks under nn.scan (the captioners' decoder stays unrolled)
    pooled_last_block: bool = True  # TwoTower's encode_*: the towers' last block computes the pooled position only

    @classmethod
    def from_config(cls, model_cfg) -> ModelOptions:
        """`config.model` → ModelOptions; ValueError naming the key for a bad value.

        `weight_grad_dot` 'auto' is resolved here, for the default backend (bigvl.models.matmul).
        """
        remat = config_choice(model_cfg.remat, REMAT_POLICIES, "remat")
        # `get`: configs saved before these keys existed.
        return cls(dtype=jnp.dtype(config_choice(model_cfg.dtype, DTYPES, "dtype")),
                   param_dtype=jnp.dtype(config_choice(model_cfg.param_dtype, DTYPES, "param_dtype")),
                   remat=remat,
                   attention_impl=config_choice(model_cfg.attention_impl, ATTENTION_IMPLS, "attention_impl") or None,
                   weight_grad=resolve_weight_grad(model_cfg.get("weight_grad_dot", "auto"), remat),
                   scan_layers=config_choice(model_cfg.get("scan_layers", False), (False, True), "scan_layers"),
                   pooled_last_block=config_choice(model_cfg.get("pooled_last_block", True), (True, False),
                                                   "pooled_last_block"))
