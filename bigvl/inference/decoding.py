"""Caption decoding for CoCa / CLIPS: greedy, beam search and top-p sampling, jitted and batched.

    fn = make_decode_fn(model, DecodeConfig(method="beam", max_length=32, beam_size=4))
    tokens = fn(params, images, cond_tokens, rng)            # int32 [B, max_length]
    texts = bigvl.inference.decoding.caption(run, images)               # on a loaded run (bigvl.inference.run.load_run)

Every method runs one `jax.lax.while_loop` over positions that stops when every sequence
has emitted EOS (beam search: when no live beam can beat a finished one, see `_beam`).
PAD and BOS are never generated (their logits are -inf at every step). With
`use_cache=True` (default) each step feeds one token through the decoder's KV cache
(`model.init_cache` / `model.decode_step`); with `use_cache=False` it recomputes the whole
prefix every step (`model.caption_logits`), the reference the cache is tested against.
Both paths share the search code below, so they differ only in how the next-token logits
are computed. Output rows hold the generated ids then EOS, then padding (BOS is not
included).

The model protocol (CoCa and CLIPS implement it): `caption_memory(images, cond_tokens)
→ (memory [B,M,D], memory_lengths [B] | None)`, `init_cache(memory, max_length)`,
`decode_step(token [B], position, cache, memory_lengths) → (logits [B,V], cache)`,
`caption_logits(tokens [B,T], memory, memory_lengths) → logits [B,T,V]`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bigvl.data.length_prefix import length_prompt, strip_length_prefix
from bigvl.inference import guided_decoding
from bigvl.inference.batched import run_in_chunks
from bigvl.inference.images import prepare_images
from bigvl.inference.prefixed_decoding import forced_prefix_stepper
from bigvl.inference.run_config import captioning_entry

METHODS = ("greedy", "beam", "sample")


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    """How to decode. `length_penalty` α ranks finished beams by log p / length^α (length counts EOS).

    Special ids default to the model's own (`model.bos_id`, `eos_id`, `pad_id`, from
    config.model.text); set one to override it (e.g. eos_id=-1: never stop early).
    """
    method: str = "greedy"
    max_length: int = 32
    beam_size: int = 4
    top_p: float = 0.9
    temperature: float = 1.0
    length_penalty: float = 1.0
    use_cache: bool = True
    guidance: float = 0.0  # classifier-free guidance weight w (bigvl/inference/guided_decoding.py); 0 = off
    prefix: tuple[int, ...] = ()  # token ids the caption is forced to start with (length control: "N words:")
    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"decode method {self.method!r} is not one of {METHODS}")
        if (self.max_length < 1 or self.beam_size < 1 or not 0 < self.top_p <= 1 or self.temperature <= 0
                or self.guidance < 0):
            raise ValueError(f"bad decode settings: {self}")


def _stepper(model: nn.Module, params, memory, memory_lengths, cfg: DecodeConfig):
    """(initial state, step(state, token [N], i) → (logits float32 [N,V], state)) for cached or full decoding."""
    variables = {"params": params}
    if cfg.use_cache:
        state = model.apply(variables, memory, cfg.max_length, method="init_cache")

        def step(cache, token, i):
            return model.apply(variables, token, i, cache, memory_lengths, method="decode_step")
    else:
        state = jnp.full((memory.shape[0], cfg.max_length), cfg.pad_id, jnp.int32)

        def step(inputs, token, i):
            inputs = jax.lax.dynamic_update_slice_in_dim(inputs, token[:, None].astype(jnp.int32), i, axis=1)
            logits = model.apply(variables, inputs, memory, memory_lengths, method="caption_logits")
            return jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False), inputs
    return state, step


def _top_p_filter(logits: jax.Array, top_p: float) -> jax.Array:
    """logits [N,V] → logits with every token outside the smallest set of mass ≥ top_p set to -inf."""
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    kept = jnp.where(mass_before < top_p, sorted_logits, jnp.inf)
    threshold = jnp.min(kept, axis=-1, keepdims=True)  # the smallest kept logit
    return jnp.where(logits >= threshold, logits, -jnp.inf)


def _mask_special(logits: jax.Array, cfg: DecodeConfig) -> jax.Array:
    """logits [N,V] → the same with PAD and BOS at -inf (never generated; EOS is kept if it shares an id)."""
    ids = jnp.arange(logits.shape[-1])
    banned = (((ids == cfg.pad_id) & (cfg.pad_id != cfg.eos_id))
              | ((ids == cfg.bos_id) & (cfg.bos_id != cfg.eos_id)))
    return jnp.where(banned, -jnp.inf, logits)


def _per_row(rng) -> bool:
    """Whether `rng` holds one key per row: typed keys [B] or raw uint32 key data [B,2]."""
    typed = jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key)
    return rng.ndim == (1 if typed else 2)


def _greedy_or_sample(step, state, batch: int, cfg: DecodeConfig, rng) -> jax.Array:
    """step (see _stepper) over `batch` rows → ids int32 [batch, max_length] (argmax or top-p sample).

    rng: one key (row draws depend on the batch) or one key per row ([batch] typed keys, or
    raw uint32 key data [batch, 2]: each row's draws depend on its own key only)."""
    def cond(carry):
        i, _, _, _, done = carry
        return (i < cfg.max_length) & ~jnp.all(done)

    def body(carry):
        i, token, state, out, done = carry
        logits, state = step(state, token, i)
        logits = _mask_special(logits.astype(jnp.float32), cfg)
        if cfg.method == "sample":
            logits = _top_p_filter(logits / cfg.temperature, cfg.top_p)
            if _per_row(rng):  # one key per row: a row's draws do not depend on the other rows
                nxt = jax.vmap(lambda key, row: jax.random.categorical(jax.random.fold_in(key, i), row))(rng, logits)
            else:
                nxt = jax.random.categorical(jax.random.fold_in(rng, i), logits, axis=-1)
        else:
            nxt = jnp.argmax(logits, axis=-1)
        nxt = jnp.where(done, cfg.pad_id, nxt).astype(jnp.int32)
        out = jax.lax.dynamic_update_slice_in_dim(out, nxt[:, None], i, axis=1)
        return i + 1, nxt, state, out, done | (nxt == cfg.eos_id)

    token = jnp.full((batch,), cfg.bos_id, jnp.int32)
    out = jnp.full((batch, cfg.max_length), cfg.pad_id, jnp.int32)
    carry = (jnp.int32(0), token, state, out, jnp.zeros((batch,), bool))
    return jax.lax.while_loop(cond, body, carry)[3]


def _beam(step, state, batch: int, cfg: DecodeConfig) -> jax.Array:
    """Beam search with a pool of finished hypotheses → ids int32 [batch, max_length].

    `state` holds batch·k rows (row b·k + j = beam j of example b). Per example, k live beams
    hold the best unfinished prefixes by raw log p; every live beam's EOS extension is offered
    to a pool of k finished captions ranked by log p / length^α (length counts EOS). Live beams
    never hold EOS, so short finished captions cannot take their places (HF's BeamHypotheses,
    t5x's beam_search; like t5x, every EOS extension is offered to the pool, not only those
    ranked among the top candidates). An example stops when no live beam can beat its worst
    finished one: extending adds log p ≤ 0, so a live prefix of raw score s can reach at best
    max(s / (i+2)^α, s / max_length^α). The result is the best finished caption, or the best
    live beam where none finished by max_length. Log-probs are the model's own (log_softmax
    over the whole vocabulary) with PAD and BOS then set to -inf.
    """
    k, length = cfg.beam_size, cfg.max_length
    alpha = cfg.length_penalty

    def penalised(raw, n):  # raw log p [..] of captions of n tokens (incl. EOS)
        return raw / jnp.asarray(n, jnp.float32) ** alpha

    def cond(carry):
        i, *_, done = carry
        return (i < length) & ~jnp.all(done)

    def body(carry):
        i, token, state, seqs, scores, fin_seqs, fin_scores, done = carry
        logits, state = step(state, token, i)
        vocab = logits.shape[-1]
        logp = _mask_special(jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), cfg)
        cand = scores[..., None] + logp.reshape(batch, k, vocab)  # [B,k,V] raw log p of each extension
        if 0 <= cfg.eos_id < vocab:  # every live beam + EOS, merged into the pool (pool first: a tie keeps it)
            ended = jax.lax.dynamic_update_slice_in_dim(seqs, jnp.full((batch, k, 1), cfg.eos_id, jnp.int32), i, 2)
            pool = jnp.concatenate([fin_scores, penalised(cand[..., cfg.eos_id], i + 1)], axis=1)  # [B,2k]
            top_fin, pick = jax.lax.top_k(pool, k)
            picked = jnp.take_along_axis(jnp.concatenate([fin_seqs, ended], axis=1), pick[..., None], axis=1)
            fin_scores = jnp.where(done[:, None], fin_scores, top_fin)  # a stopped example keeps its pool
            fin_seqs = jnp.where(done[:, None, None], fin_seqs, picked)
            cand = cand.at[..., cfg.eos_id].set(-jnp.inf)
        top, flat = jax.lax.top_k(cand.reshape(batch, k * vocab), k)  # live: the best unfinished extensions
        beam, nxt = flat // vocab, (flat % vocab).astype(jnp.int32)
        rows = (jnp.arange(batch)[:, None] * k + beam).reshape(-1)
        state = jax.tree.map(lambda x: x[rows], state)
        seqs = jnp.take_along_axis(seqs, beam[..., None], axis=1)
        seqs = jax.lax.dynamic_update_slice_in_dim(seqs, nxt[..., None], i, axis=2)
        reachable = jnp.where(i + 2 <= length, jnp.maximum(penalised(top[:, 0], i + 2), penalised(top[:, 0], length)),
                              -jnp.inf)  # the best a live beam can still finish with
        done = done | (reachable <= fin_scores[:, -1])
        return i + 1, nxt.reshape(-1), state, seqs, top, fin_seqs, fin_scores, done

    token = jnp.full((batch * k,), cfg.bos_id, jnp.int32)
    seqs = jnp.full((batch, k, length), cfg.pad_id, jnp.int32)
    scores = jnp.tile(jnp.asarray([0.0] + [-jnp.inf] * (k - 1), jnp.float32), (batch, 1))
    fin_scores = jnp.full((batch, k), -jnp.inf, jnp.float32)
    carry = (jnp.int32(0), token, state, seqs, scores, seqs, fin_scores, jnp.zeros((batch,), bool))
    _, _, _, seqs, _, fin_seqs, fin_scores, _ = jax.lax.while_loop(cond, body, carry)
    any_finished = fin_scores[:, 0] > -jnp.inf  # top_k keeps both lists sorted, best first
    return jnp.where(any_finished[:, None], fin_seqs[:, 0], seqs[:, 0])


def decode(model: nn.Module, params, images: jax.Array, cond_tokens: jax.Array | None, rng: jax.Array,
           cfg: DecodeConfig) -> jax.Array:
    """images [B,S,S,3] (+ CLIPS alt-text tokens [B,L]) → generated ids int32 [B, max_length]."""
    cfg = dataclasses.replace(cfg, **{name: getattr(model, name) for name in ("bos_id", "eos_id", "pad_id")
                                      if getattr(cfg, name) is None})
    memory, memory_lengths = model.apply({"params": params}, images, cond_tokens, method="caption_memory")
    batch = memory.shape[0]
    if cfg.method == "beam":
        memory = jnp.repeat(memory, cfg.beam_size, axis=0)
        memory_lengths = None if memory_lengths is None else jnp.repeat(memory_lengths, cfg.beam_size, axis=0)
    if cfg.guidance:  # each row twice, with and without its image (the model must be trained with image_drop)
        memory, memory_lengths = guided_decoding.with_unconditional(memory, memory_lengths)
    state, step = _stepper(model, params, memory, memory_lengths, cfg)
    if cfg.guidance:
        state, step = guided_decoding.guided_stepper(state, step, cfg.guidance)
    if cfg.prefix:
        step = forced_prefix_stepper(step, cfg.prefix)
    if cfg.method == "beam":
        return _beam(step, state, batch, cfg)
    return _greedy_or_sample(step, state, batch, cfg, rng)


def make_decode_fn(model: nn.Module, cfg: DecodeConfig, rules=()) -> Callable:
    """jit(params, images [B,S,S,3], cond_tokens [B,L] | None, rng) → ids int32 [B, max_length].

    rng (sampling): one key, or one per row (typed keys [B] / raw uint32 [B,2]) so that a row's
    caption does not depend on its batch-mates (bigvl/inference/recaption.py)."""
    def fn(params, images, cond_tokens, rng):
        with nn.logical_axis_rules(rules):
            return decode(model, params, images, cond_tokens, rng, cfg)
    return jax.jit(fn)


@dataclasses.dataclass
class Captioner:
    """Captions images with a captioning model's params: batches, shards, decodes, detokenises.

    Compiles one function per DecodeConfig (kept in `_fns`). `needs_condition`: CLIPS
    conditions on a text per image (the alt-text); CoCa takes none.
    """
    model: nn.Module
    tokenizer: Any
    context_length: int
    mesh: jax.sharding.Mesh
    rules: Any
    batch_size: int
    needs_condition: bool
    _fns: dict = dataclasses.field(default_factory=dict)

    def tokens(self, params, images: np.ndarray, cond_texts: Sequence[str] | None = None,
               cfg: DecodeConfig = DecodeConfig(), seed: int = 0) -> np.ndarray:
        """images uint8 [N,S,S,3] (+ N condition texts for CLIPS) → ids int32 [N, max_length]."""
        if self.needs_condition and cond_texts is None:
            raise ValueError("this model captions an image given its alt-text: pass one condition text per image")
        if cfg not in self._fns:
            self._fns[cfg] = make_decode_fn(self.model, cfg, self.rules)
        fn = self._fns[cfg]
        inputs = {"image": np.asarray(images)}
        if self.needs_condition:
            inputs["cond"] = self.tokenizer.encode(list(cond_texts), self.context_length)
        return run_in_chunks(
            lambda batch, start: fn(params, batch["image"], batch.get("cond"), jax.random.key(seed + start)),
            inputs, self.batch_size, self.mesh)

    def caption(self, params, images: np.ndarray, cond_texts: Sequence[str] | None = None,
                cfg: DecodeConfig = DecodeConfig(), seed: int = 0) -> list[str]:
        """images uint8 [N,S,S,3] (+ condition texts) → N caption strings."""
        return [self.tokenizer.decode(row) for row in self.tokens(params, images, cond_texts, cfg, seed)]


def make_captioner(model: nn.Module, tokenizer, model_cfg, mesh, rules, batch_size: int) -> Captioner | None:
    """A Captioner for CoCa / CLIPS models (None for models without a decoder)."""
    if not hasattr(model, "decode_step"):
        return None
    return Captioner(model=model, tokenizer=tokenizer, context_length=model_cfg.text.context_length, mesh=mesh,
                     rules=rules, batch_size=batch_size,  # a multiple of the devices (make_encoder)
                     needs_condition=model_cfg.get("kind") == "clips")


def length_prefix_ids(captioner, length: int) -> tuple[int, ...]:
    """The token ids of the prompt "N words:" (N = `length`) in `captioner`'s tokenizer, no EOS or padding:
    `DecodeConfig.prefix` for a run trained with `data.target_length_prefix`."""
    prompt = length_prompt(length)
    return tuple(int(t) for t in captioner.tokenizer.encode(
        [prompt], captioner.context_length)[0][:captioner.tokenizer.count_tokens(prompt)])


def caption(run, images, cond_texts: Sequence[str] | None = None, method: str = "greedy",
            max_length: int | None = None, seed: int = 0, length: int | None = None, **options) -> list[str]:
    """Captions of uint8 images [N,H,W,3] (any size) with a loaded run (`bigvl.load(workdir)`).

    CLIPS runs need `cond_texts` (each image's alt-text). `length`: N words, for a run trained with
    `data.target_length_prefix` (the prompt "N words:" is forced, then removed). `options`: DecodeConfig fields
    (beam_size, top_p, temperature, length_penalty, use_cache).
    """
    captioner = run.encoder.captioner
    if captioner is None:
        raise ValueError(f"model.kind {run.config.model.kind!r} has no caption decoder")
    prepared = prepare_images(images, run.encoder.image_size, run.encoder.resize, run.encoder.interpolation)
    if length is not None:  # a run trained with data.target_length_prefix: force "N words:", strip it after
        options["prefix"] = length_prefix_ids(captioner, length)
    cfg = DecodeConfig(method=method, max_length=max_length or captioning_entry(run.config).max_length, **options)
    texts = captioner.caption(run.params, prepared, cond_texts, cfg, seed)
    return [strip_length_prefix(t) for t in texts] if length is not None else texts
