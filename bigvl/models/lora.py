"""LoRA (Hu et al. 2021): low-rank adapters on chosen Dense kernels, y = x·W + (α/r)·dropout(x)·A·B.

    model = build_model(config.model)    # a LoraModel when model.lora.rank > 0
    params = nn.unbox(model.init(rng, images, tokens)["params"])   # base params + lora_a / lora_b
    merged, model_cfg = merge_lora(params, config.model)           # W + (α/r)·A·B, adapters gone

The adapters are params of the layer they adapt, beside its kernel: a kernel [*in, *out] (e.g.
the fused qkv [D, 3, H, K]) gets `lora_a` [*in, r] (the kernel's input axis names, then
`lora_rank`) and `lora_b` [r, *out] (`lora_rank`, then the kernel's output axis names), so they
shard like the kernel under any rules and stack like it under `nn.scan` (scanned encoders:
[depth, ...]). A is initialised like a kernel (lecun normal over the fan-in), B to zeros: at
init the model computes exactly what the base model computes. Which layers: `model.lora.kernels`, a
regex over the '/'-joined module path ('image/encoder/block_0/attn/qkv'; scanned: '.../blocks/attn/qkv').

The adapters are added by a flax method interceptor around `init` / `apply`
(`nn.intercept_methods`), so the towers' code is unchanged; the train step computes the
unmerged form (x·A then ·B: no kernel-sized product), export and `bigvl.load` merge it.
Dropout on the adapter input needs a 'dropout' rng (`LoraModel.with_dropout_rng`; else none).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from bigvl.models.transformer import SCANNED_BLOCKS, DenseGeneral, flat_init, named

A_NAME, B_NAME = "lora_a", "lora_b"
RANK_AXIS = "lora_rank"  # logical name of the rank axis (no rule maps it: replicated)
DEFAULT_KERNELS = r".*/(attn/(qkv|out)|mlp/fc1|mlp/fc2)"
A_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "normal")


def lora_config_defaults() -> ml_collections.ConfigDict:
    """`config.model.lora`: rank 0 = off."""
    return ml_collections.ConfigDict({
        "rank": 0,  # r; > 0 adds adapters to every Dense whose module path matches `kernels`
        "alpha": 16.0,  # the update is scaled by alpha / rank
        "dropout": 0.0,  # on the adapter's input, in training
        "kernels": DEFAULT_KERNELS,  # regex over '/'-joined module paths (attention q/k/v/out, MLP)
    })


def lora_enabled(model_cfg) -> bool:
    """Whether `config.model` asks for adapters (configs saved before `model.lora` existed: no)."""
    lora = model_cfg.get("lora")
    return lora is not None and int(lora.get("rank", 0)) > 0


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    """What the interceptor adds: rank r, scale α/r, dropout rate, and the module-path regex."""
    rank: int
    scale: float
    dropout: float
    kernels: str

    @classmethod
    def from_config(cls, model_cfg) -> LoraSpec:
        lora = model_cfg.lora
        if int(lora.rank) <= 0 or not float(lora.alpha) > 0:
            raise ValueError(f"config key 'model.lora': rank must be > 0 and alpha > 0, got rank {lora.rank}, "
                             f"alpha {lora.alpha}")
        if not 0.0 <= float(lora.dropout) < 1.0:
            raise ValueError(f"config key 'model.lora.dropout' must be in [0, 1), got {lora.dropout}")
        try:
            re.compile(lora.kernels)
        except re.error as e:
            raise ValueError(f"config key 'model.lora.kernels': {lora.kernels!r} is not a regex ({e})") from None
        return cls(int(lora.rank), float(lora.alpha) / int(lora.rank), float(lora.dropout), lora.kernels)


def _dense_info(module: nn.Module) -> tuple[int, Any, Any]:
    """(input axes contracted, compute dtype, param dtype) of a DenseGeneral or nn.Dense."""
    if isinstance(module, DenseGeneral):
        return module.in_dims, module.options.dtype, module.options.param_dtype
    return 1, module.dtype, module.param_dtype


def _axis_names(kernel: Any) -> tuple:
    return tuple(kernel.names) if isinstance(kernel, nn.LogicallyPartitioned) else (None,) * jnp.ndim(kernel)


def _adapter_delta(spec: LoraSpec, module: nn.Module, x: jax.Array, select: slice | None) -> jax.Array:
    """(α/r)·dropout(x)·A·B for `module`'s kernel, creating A and B at init: [..., *in] → [..., *out]."""
    n, dtype, param_dtype = _dense_info(module)
    kernel = module.get_variable("params", "kernel")
    names, shape = _axis_names(kernel), jnp.shape(nn.unbox(kernel))
    a = module.param(A_NAME, named(flat_init(A_INIT, n), *names[:n], RANK_AXIS), shape[:n] + (spec.rank,), param_dtype)
    b = module.param(B_NAME, named(nn.initializers.zeros, RANK_AXIS, *names[n:]), (spec.rank,) + shape[n:],
                     param_dtype)
    if select is not None:
        b = b[:, select]
    if spec.dropout > 0 and module.has_rng("dropout"):
        keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - spec.dropout, x.shape)
        x = jnp.where(keep, x / (1.0 - spec.dropout), 0.0).astype(x.dtype)
    x, a, b = nn.dtypes.promote_dtype(x, a, b, dtype=dtype)
    return low_rank_delta(x, a, b, n, spec.scale)


def _contract(x: jax.Array, y: jax.Array, x_axes, y_axes) -> jax.Array:
    return jax.lax.dot_general(x, y, ((tuple(x_axes), tuple(y_axes)), ((), ())))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def low_rank_delta(x: jax.Array, a: jax.Array, b: jax.Array, n: int, scale: float) -> jax.Array:
    """scale·(x·A)·B: x [..., *in] (its last `n` axes contracted), A [*in, r], B [r, *out] → [..., *out].

    The up-projection (·B) runs as a broadcast multiply summed over the r axis, not as a dot, on
    purpose: remat policies that save dots ('dots_saveable', the B/16 configs') would otherwise
    save its output-sized result beside the base kernel's own dot output, doubling the saved
    activations of every adapted layer (the B/16 plan anomaly, docs/results/fine_tuning.md). Saved
    are only the rank-r h = x·A (a dot) and what the base layer saves; the sum is recomputed in the
    backward pass (r multiply-adds per output, fused by XLA). The custom VJP gives the backward as
    four rank-r matmuls (the autodiff of the broadcast form would be elementwise too).
    """
    return _low_rank_fwd(x, a, b, n, scale)[0]


def _low_rank_fwd(x, a, b, n, scale):
    h = _contract(x, a, range(x.ndim - n, x.ndim), range(n))  # [..., r]
    m = b.ndim - 1
    delta = jnp.sum(h.reshape(h.shape + (1,) * m) * b, axis=h.ndim - 1)  # [..., *out]
    return delta * jnp.asarray(scale, delta.dtype), (x, a, b, h)


def _low_rank_bwd(n, scale, residuals, g):
    x, a, b, h = residuals
    m, lead = b.ndim - 1, x.ndim - n  # output axes, leading (token) axes
    g = g * jnp.asarray(scale, g.dtype)
    dh = _contract(g, b, range(g.ndim - m, g.ndim), range(1, b.ndim))  # [..., r]
    db = _contract(h, g, range(lead), range(lead))  # [r, *out]
    da = _contract(x, dh, range(lead), range(lead))  # [*in, r]
    dx = _contract(dh, a, (dh.ndim - 1,), (a.ndim - 1,))  # [..., *in]
    return dx.astype(x.dtype), da.astype(a.dtype), db.astype(b.dtype)


low_rank_delta.defvjp(_low_rank_fwd, _low_rank_bwd)


def lora_interceptor(spec: LoraSpec):
    """A `nn.intercept_methods` interceptor adding the adapter to each matching Dense call."""
    pattern = re.compile(spec.kernels)

    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if (context.method_name != "__call__" or not isinstance(module, (DenseGeneral, nn.Dense))
                or not pattern.fullmatch("/".join(module.scope.path))):
            return next_fun(*args, **kwargs)
        y = next_fun(*args, **kwargs)
        select = kwargs.get("select", args[1] if len(args) > 1 else None)
        return y + _adapter_delta(spec, module, args[0], select).astype(y.dtype)

    return intercept


class LoraModel:
    """A linen model with LoRA adapters: `init` / `apply` (any `method`) run the wrapped model under
    the adapter interceptor; every other attribute is the wrapped model's. `LoraModel(base, spec)`
    is an instance of a subclass that also carries the base class's methods (`type(model).encode_image`
    is `TwoTower.encode_image`, for `apply(..., method=...)`)."""

    def __new__(cls, base: nn.Module, spec: LoraSpec, dropout_rng: jax.Array | None = None):
        if cls is LoraModel:
            base_cls = type(base)
            methods = {k: getattr(base_cls, k) for k in dir(base_cls) if not k.startswith("_")
                       and not hasattr(nn.Module, k) and not hasattr(LoraModel, k)
                       and inspect.isfunction(getattr(base_cls, k))}
            cls = type(f"Lora{base_cls.__name__}", (LoraModel,), methods)
        return object.__new__(cls)

    def __init__(self, base: nn.Module, spec: LoraSpec, dropout_rng: jax.Array | None = None):
        self.base, self.spec, self._dropout_rng = base, spec, dropout_rng

    def __getattr__(self, name: str):
        return getattr(self.base, name)

    def with_dropout_rng(self, rng: jax.Array) -> LoraModel:
        """This model, whose `apply` draws the adapters' dropout from `rng` (training)."""
        return LoraModel(self.base, self.spec, rng)

    def init(self, rngs, *args, **kwargs):
        with nn.intercept_methods(lora_interceptor(self.spec)):
            return self.base.init(rngs, *args, **kwargs)

    def apply(self, variables, *args, **kwargs):
        if self._dropout_rng is not None and self.spec.dropout > 0 and "rngs" not in kwargs:
            kwargs["rngs"] = {"dropout": self._dropout_rng}
        with nn.intercept_methods(lora_interceptor(self.spec)):
            return self.base.apply(variables, *args, **kwargs)


def merge_lora(params: dict, model_cfg) -> tuple[dict, ml_collections.ConfigDict]:
    """(params with every adapted kernel W replaced by W + (α/r)·A·B in float32, cast back, and the
    adapters removed; a copy of `model_cfg` with `lora.rank` 0). The merged params are those of the
    model `build_model` makes from that config. Kernels [*in, *out]; scanned [L, *in, *out]."""
    scale = float(model_cfg.lora.alpha) / int(model_cfg.lora.rank)

    def merge_module(node: dict, path: tuple) -> dict:
        if A_NAME not in node:
            return {k: merge_module(v, path + (k,)) if isinstance(v, dict) else v for k, v in node.items()}
        kernel, a, b = node["kernel"], node[A_NAME], node[B_NAME]
        stacked = SCANNED_BLOCKS in path
        lead = 1 if stacked else 0
        n = a.ndim - 1 - lead
        a2 = jnp.reshape(a, a.shape[:lead] + (math.prod(a.shape[lead:lead + n]), a.shape[-1])).astype(jnp.float32)
        b2 = jnp.reshape(b, b.shape[:lead + 1] + (-1,)).astype(jnp.float32)
        delta = (jnp.einsum("lir,lro->lio", a2, b2) if stacked else a2 @ b2).reshape(kernel.shape)
        merged = (kernel.astype(jnp.float32) + scale * delta).astype(kernel.dtype)
        return {**{k: v for k, v in node.items() if k not in (A_NAME, B_NAME)}, "kernel": merged}

    merged = merge_module(dict(params), ())
    cfg = ml_collections.ConfigDict(model_cfg.to_dict())
    cfg.lora.rank = 0
    return merged, cfg


def split_adapters(params: dict) -> tuple[dict, dict]:
    """(params without the adapters, {path: adapter}) for '/'-joined paths."""
    adapters = {}

    def drop(node: dict, prefix: str) -> dict:
        out = {}
        for k, v in node.items():
            if isinstance(v, dict):
                out[k] = drop(v, f"{prefix}{k}/")
            elif k in (A_NAME, B_NAME):
                adapters[prefix + k] = v
            else:
                out[k] = v
        return out

    return drop(dict(params), ""), adapters


def join_adapters(params: dict, adapters: dict) -> dict:
    """`params` with the {path: adapter} leaves of `split_adapters` put back."""
    out = jax.tree.map(lambda x: x, params)
    for path, value in adapters.items():
        node = out
        *parents, leaf = path.split("/")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return out
