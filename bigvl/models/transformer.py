"""The transformer pieces both towers share: attention, MLP, pre-LN encoder block, encoder, MAP head.

Every parameter carries logical axis names (`embed`, `mlp`, `heads`, `kv`, None) through
`nn.with_logical_partitioning`; activations are constrained with `nn.with_logical_constraint`
(`batch`, `seq`, `act_embed`, `act_mlp`, `act_heads`). Both are no-ops outside
`nn.logical_axis_rules(...)` + a mesh, so the same modules run unsharded on one device.

Every module takes the execution options whole (`options`, a `bigvl.models.options.ModelOptions`:
dtypes, remat, attention kernel, weight gradient, scanned blocks). Compute runs in
`options.dtype` (e.g. bfloat16) with params stored in `options.param_dtype`; LayerNorm
statistics and the attention softmax are always float32 (flax LayerNorm and
`jax.nn.dot_product_attention` upcast internally).
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigvl.models.matmul import dense_dot, flax_dot_general
from bigvl.models.options import REMAT_POLICIES, ModelOptions
from bigvl.models.rope import Rope, rotate_qk

Dtype = Any

# Multi-axis kernels are initialised on their 2-D [in, out] view (see DenseGeneral): for the fused
# qkv kernel that is xavier_uniform on [D, 3·H·K], as torch's nn.MultiheadAttention in_proj.
DENSE_INIT = nn.initializers.xavier_uniform()
ZEROS = nn.initializers.zeros

ACTIVATIONS = ("gelu_tanh", "gelu", "quick_gelu")  # model.activation: big_vision/SigLIP, exact erf, OpenAI CLIP


def activation_fn(name: str):
    """`model.activation` → the MLP nonlinearity: tanh-approximated GELU, exact erf GELU, or
    QuickGELU x·σ(1.702x)."""
    if name == "gelu_tanh":
        return lambda x: nn.gelu(x, approximate=True)
    if name == "gelu":
        return lambda x: nn.gelu(x, approximate=False)
    if name == "quick_gelu":
        return lambda x: x * jax.nn.sigmoid(1.702 * x)
    raise ValueError(f"model.activation {name!r} is not one of {ACTIVATIONS}")


def named(initializer, *names: str | None):
    """An initializer whose param carries the logical axis `names` (one per dimension)."""
    return nn.with_logical_partitioning(initializer, names)


def layer_norm(options: ModelOptions, name: str | None = None, eps: float = 1e-6) -> nn.LayerNorm:
    """LayerNorm over the last (`embed`) axis; statistics in float32, output in `options.dtype`.

    eps 1e-6 (big_vision, the default); open_clip's and HF CLIP's LayerNorms use 1e-5 (`model.layer_norm_eps`)."""
    return nn.LayerNorm(epsilon=eps, dtype=options.dtype, param_dtype=options.param_dtype, name=name,
                        scale_init=named(nn.initializers.ones, "embed"), bias_init=named(ZEROS, "embed"))


def remat_policy(name: str):
    """Config name → (use_remat, jax.checkpoint policy). 'full' saves nothing; 'none' disables remat."""
    if name not in REMAT_POLICIES:
        raise ValueError(f"model.remat {name!r} is not one of {REMAT_POLICIES}")
    if name == "none":
        return False, None
    policy = "nothing_saveable" if name == "full" else name
    return True, getattr(jax.checkpoint_policies, policy)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, *, is_causal: bool = False,
              kv_lengths: jax.Array | None = None, implementation: str | None = None,
              mask: jax.Array | None = None) -> jax.Array:
    """Fused scaled dot-product attention.

    q [B,T,H,K], k/v [B,S,H,K] in the compute dtype; kv_lengths int32 [B] masks keys at
    positions >= length (right padding); mask bool [B,1,T,S] (True = attend) masks further.
    Returns [B,T,H,K] in q's dtype (softmax in float32).
    implementation: 'xla', 'cudnn', or None / '' = by backend (`attention_implementation`).
    """
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=is_causal, key_value_seq_lengths=kv_lengths,
                                        implementation=implementation or attention_implementation(q.dtype, q.shape[-1]))


def take_positions(x: jax.Array, positions: int | jax.Array) -> jax.Array:
    """x [B,T,D] → [B,1,D]: position `positions` (an int, or int32 [B], one per sequence)."""
    if isinstance(positions, int):
        return x[:, positions:positions + 1]
    return jnp.take_along_axis(x, positions[:, None, None], axis=1)


def attention_implementation(dtype, head_dim: int, backend: str | None = None) -> str:
    """The attention kernel when the config leaves it to bigvl: 'cudnn' (flash attention) on a GPU
    for bf16 / fp16 with a head width cuDNN takes (a multiple of 8, at most 128), else 'xla'.

    (`jax.nn.dot_product_attention` itself always picks XLA when given None.) backend: default
    `jax.default_backend()`, i.e. 'xla' on CPU and TPU, also when compiling for a TPU topology.
    """
    backend = backend or jax.default_backend()
    flash_ok = jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16) and head_dim % 8 == 0 and head_dim <= 128
    return "cudnn" if backend in ("gpu", "cuda") and flash_ok else "xla"


def flat_init(initializer, in_dims: int):
    """Applies a 2-D `initializer` to the [prod(in), prod(out)] view of a kernel [*in, *out]."""
    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = math.prod(shape[:in_dims]), math.prod(shape[in_dims:])
        return initializer(key, (fan_in, fan_out), dtype).reshape(shape)
    return init


class DenseGeneral(nn.Module):
    """x [..., *in] → [..., *features], contracting the last `in_dims` axes of x.

    Kernel [*in, *features] named `kernel_names`, bias [*features] named `kernel_names[in_dims:]`,
    initialised as one 2-D [prod(in), prod(features)] matrix (flax's DenseGeneral does the same
    but boxes the flattened value, which breaks logical constraints at init under a mesh).
    """
    features: tuple[int, ...]
    kernel_names: tuple[str | None, ...]
    in_dims: int = 1
    use_bias: bool = True
    options: ModelOptions = ModelOptions()  # dtypes, and how the kernel gradient is computed (weight_grad)

    @nn.compact
    def __call__(self, x: jax.Array, select: slice | None = None) -> jax.Array:
        """select: a slice of the first feature axis; only those outputs are computed (the
        fused qkv projection's q or k, v alone), from the same params."""
        in_shape, n, opts = tuple(x.shape[-self.in_dims:]), self.in_dims, self.options
        kernel = self.param("kernel", named(flat_init(DENSE_INIT, n), *self.kernel_names),
                            in_shape + tuple(self.features), opts.param_dtype)
        bias = (self.param("bias", named(ZEROS, *self.kernel_names[n:]), tuple(self.features), opts.param_dtype)
                if self.use_bias else None)
        if select is not None:
            kernel = kernel[(slice(None),) * n + (select,)]
            bias = None if bias is None else bias[select]
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=opts.dtype)
        y = dense_dot(x, kernel, n, opts.weight_grad)
        return y if bias is None else y + bias


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection: [B,T,D] → [B,T,D]."""
    num_heads: int
    is_causal: bool = False
    options: ModelOptions = ModelOptions()
    rope: Rope | None = None  # rotary positions on q and k (bigvl/models/rope.py); None: positions added outside

    @nn.compact
    def __call__(self, x: jax.Array, kv_lengths: jax.Array | None = None,
                 query_positions: int | jax.Array | None = None) -> jax.Array:
        """query_positions: None, or one query position per sequence (an int, or int32 [B]):
        then only that position attends (to every key), and the output is [B,1,D]."""
        width = x.shape[-1]
        heads, head_dim = self.num_heads, width // self.num_heads
        dense = dict(options=self.options)
        qkv_proj = DenseGeneral((3, heads, head_dim), ("embed", None, "heads", "kv"), name="qkv", **dense)
        if query_positions is None:
            qkv = nn.with_logical_constraint(qkv_proj(x), ("batch", "seq", None, "act_heads", None))
            q, k = rotate_qk(qkv[:, :, 0], qkv[:, :, 1], self.rope)
            y = attention(q, k, qkv[:, :, 2], is_causal=self.is_causal,
                          kv_lengths=kv_lengths, implementation=self.options.attention_impl)
        else:  # one query per sequence: its q alone, k and v of every position
            kv = nn.with_logical_constraint(qkv_proj(x, slice(1, 3)), ("batch", "seq", None, "act_heads", None))
            q = qkv_proj(take_positions(x, query_positions), slice(0, 1))[:, :, 0]
            q, k = rotate_qk(q, kv[:, :, 0], self.rope, query_positions)
            mask = None
            if self.is_causal:  # keys up to the query's own position
                where = jnp.broadcast_to(jnp.asarray(query_positions, jnp.int32), x.shape[:1])
                mask = jnp.arange(x.shape[1])[None, None, None, :] <= where[:, None, None, None]
            # XLA's kernel: one query row, and cuDNN's flash attention takes no such mask.
            y = attention(q, k, kv[:, :, 1], kv_lengths=kv_lengths, implementation="xla", mask=mask)
        y = nn.with_logical_constraint(y, ("batch", "seq", "act_heads", None))
        return DenseGeneral((width,), ("heads", "kv", "embed"), in_dims=2, name="out", **dense)(y)


class Mlp(nn.Module):
    """Dense → GELU → Dense: [..., D] → [..., D] through a hidden width `mlp_dim`.

    GELU is the tanh approximation (big_vision) by default; `activation` (ACTIVATIONS) picks
    OpenAI CLIP's QuickGELU, x·σ(1.702x), or open_clip's / HF's exact erf GELU."""
    mlp_dim: int
    activation: str = "gelu_tanh"
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width, opts = x.shape[-1], self.options
        dense = dict(dtype=opts.dtype, param_dtype=opts.param_dtype, dot_general=flax_dot_general(opts.weight_grad))
        h = nn.Dense(self.mlp_dim, **dense,
                     kernel_init=named(DENSE_INIT, "embed", "mlp"), bias_init=named(ZEROS, "mlp"),
                     name="fc1")(x)
        h = nn.with_logical_constraint(h, ("batch", "seq", "act_mlp"))
        h = activation_fn(self.activation)(h)
        return nn.Dense(width, **dense,
                        kernel_init=named(DENSE_INIT, "mlp", "embed"), bias_init=named(ZEROS, "embed"),
                        name="fc2")(h)


class EncoderBlock(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then + mlp(LN(x)). [B,T,D] → [B,T,D]."""
    num_heads: int
    mlp_dim: int
    is_causal: bool = False
    activation: str = "gelu_tanh"  # ACTIVATIONS
    ln_eps: float = 1e-6
    options: ModelOptions = ModelOptions()
    rope: Rope | None = None  # SelfAttention's rotary positions

    @nn.compact
    def __call__(self, x: jax.Array, kv_lengths: jax.Array | None = None,
                 query_positions: int | jax.Array | None = None) -> jax.Array:
        """query_positions (see SelfAttention): compute only that position's output, [B,1,D]."""
        y = layer_norm(self.options, "ln_1", self.ln_eps)(x)
        if query_positions is not None:
            x = take_positions(x, query_positions)
        x = x + SelfAttention(self.num_heads, self.is_causal, self.options, self.rope, name="attn")(
            y, kv_lengths, query_positions)
        x = nn.with_logical_constraint(x, ("batch", "seq", "act_embed"))
        y = layer_norm(self.options, "ln_2", self.ln_eps)(x)
        x = x + Mlp(self.mlp_dim, self.activation, self.options, name="mlp")(y)
        return nn.with_logical_constraint(x, ("batch", "seq", "act_embed"))


SCANNED_BLOCKS = "blocks"  # the Encoder's submodule name when its blocks run under nn.scan
LAYER_AXIS = "layers"  # logical name of the stacked params' leading layer axis (replicated by the rules)


def per_layer_ndim(path: str, ndim: int) -> int:
    """A param's rank as one block sees it: `ndim` less the stacked layer axis for params under a
    scanned Encoder (a `blocks` module in the '/'-joined `path`, see `models.param_path`), else `ndim`.

    For rules keyed on rank (weight decay on ≥ 2-D params) to treat both layouts alike.
    """
    return ndim - 1 if SCANNED_BLOCKS in path.split("/")[:-1] else ndim


class ScannedEncoderBlock(EncoderBlock):
    """An EncoderBlock in the (carry, output) form nn.scan wants: x [B,T,D] → (x' [B,T,D], None)."""

    def __call__(self, x: jax.Array, kv_lengths: jax.Array | None = None) -> tuple[jax.Array, None]:
        return super().__call__(x, kv_lengths), None


def scanned_blocks(depth: int, remat: str = "none") -> type[nn.Module]:
    """`depth` ScannedEncoderBlocks as one module class under `nn.scan` (remat inside the scanned body).

    Its params are the block's stacked on a leading layer axis [depth, ...] named LAYER_AXIS;
    kv_lengths is broadcast to every layer. Call: (x [B,T,D], kv_lengths [B] | None) → (x, None).
    """
    use_remat, policy = remat_policy(remat)
    # Inside scan, prevent_cse is unnecessary (the loop body cannot be CSE'd across iterations) and costly.
    body = nn.remat(ScannedEncoderBlock, policy=policy, prevent_cse=False) if use_remat else ScannedEncoderBlock
    # dropout split too: each layer draws its own masks (LoRA adapter dropout, bigvl/models/lora.py)
    return nn.scan(body, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True}, in_axes=(nn.broadcast,),
                   length=depth, metadata_params={nn.PARTITION_NAME: LAYER_AXIS})


class Encoder(nn.Module):
    """`depth` EncoderBlocks (each optionally rematerialised) then a final LayerNorm.

    x [B,T,D] in `dtype` → [B,T,D]; kv_lengths int32 [B] or None (see `attention`).
    Unrolled (`options.scan_layers` False): params `block_0` … `block_{depth-1}`, one Python-loop
    copy of the block per layer in the program. Scanned (True, MaxText's scan_layers): one block under
    `flax.linen.scan`, params `blocks/...` stacked on a leading [depth] axis named LAYER_AXIS, so
    the program (and its compile time) does not grow with depth; remat then wraps the scanned
    body. The two give the same outputs for the same weights (`pretrained.stack_layers`).
    """
    depth: int
    num_heads: int
    mlp_dim: int
    is_causal: bool = False
    activation: str = "gelu_tanh"  # ACTIVATIONS
    ln_eps: float = 1e-6
    options: ModelOptions = ModelOptions()  # remat and scan_layers among them
    rope: Rope | None = None  # rotary positions in every block's self-attention (bigvl/models/rope.py)

    @nn.compact
    def __call__(self, x: jax.Array, kv_lengths: jax.Array | None = None,
                 keep: int | jax.Array | None = None) -> jax.Array:
        """keep: None → [B,T,D]; or the one position per sequence whose output is wanted (an
        int, or int32 [B]) → [B,1,D]. Unrolled, the last block then computes that position
        alone (every layer's other outputs feed only the last block's keys and values): the
        same numbers for ~1/depth less work. Scanned, all positions run and `keep` is gathered."""
        use_remat, policy = remat_policy(self.options.remat)
        block_args = (self.num_heads, self.mlp_dim, self.is_causal, self.activation, self.ln_eps, self.options,
                      self.rope)
        if self.options.scan_layers:
            x, _ = scanned_blocks(self.depth, self.options.remat)(*block_args, name=SCANNED_BLOCKS)(x, kv_lengths)
            x = x if keep is None else take_positions(x, keep)
        else:
            block_cls = nn.remat(EncoderBlock, policy=policy, prevent_cse=True,
                                 static_argnums=(3,) if isinstance(keep, int) else ()) if use_remat else EncoderBlock
            for i in range(self.depth):
                x = block_cls(*block_args, name=f"block_{i}")(x, kv_lengths, keep if i == self.depth - 1 else None)
        return layer_norm(self.options, "ln_final", self.ln_eps)(x)


class MAPHead(nn.Module):
    """Multihead attention pooling (big_vision MAPHead): learned probes attend to the tokens.

    x [B,T,D] → [B,Q,D] with Q = num_queries probes; then + MLP(LN(·)) as in big_vision.
    kv_lengths int32 [B] masks padded tokens (text towers).
    CoCa's pooler (`coca.AttentionalPooler`) is a separate class, not an option of this one: it
    normalises queries and keys, ends in a LayerNorm instead of the residual MLP and names its
    params otherwise, and both param trees must stay as stored checkpoints have them.
    """
    num_heads: int
    mlp_dim: int
    num_queries: int = 1
    activation: str = "gelu_tanh"  # ACTIVATIONS
    ln_eps: float = 1e-6
    options: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, x: jax.Array, kv_lengths: jax.Array | None = None) -> jax.Array:
        batch, width = x.shape[0], x.shape[-1]
        heads, head_dim = self.num_heads, width // self.num_heads
        dense = dict(options=self.options)
        probe = self.param("probe", named(DENSE_INIT, None, "embed"), (self.num_queries, width),
                           self.options.param_dtype)
        q = DenseGeneral((heads, head_dim), ("embed", "heads", "kv"), name="q", **dense)(probe)
        q = jnp.broadcast_to(q[None], (batch,) + q.shape)
        kv = DenseGeneral((2, heads, head_dim), ("embed", None, "heads", "kv"), name="kv", **dense)(x)
        kv = nn.with_logical_constraint(kv, ("batch", "seq", None, "act_heads", None))
        y = attention(q, kv[:, :, 0], kv[:, :, 1], kv_lengths=kv_lengths, implementation=self.options.attention_impl)
        y = DenseGeneral((width,), ("heads", "kv", "embed"), in_dims=2, name="out", **dense)(y)
        y = y + Mlp(self.mlp_dim, self.activation, self.options, name="mlp")(
            layer_norm(self.options, "ln", self.ln_eps)(y))
        return nn.with_logical_constraint(y, ("batch", None, "act_embed"))
