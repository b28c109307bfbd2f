"""LocCa (Wan et al. 2024) on a SigLIP two-tower model: a decoder on the UN-pooled image tokens.

    images ─ ViT ─┬─ pooled ─ image_proj ─ image_embeds           (sigmoid loss, as TwoTower)
                  └─ patch tokens [B,N,W] ─ memory of the LocCa decoder (CaptionDecoder, CoCa's)
    locca_inputs [B,Ld] ─ LocCa decoder ─ logits [B,Ld,V'] ─ NLL against locca_labels

SigLIP 2 (Tschannen et al. 2025, §2.2) trains the image encoder with this decoder beside the
sigmoid loss and drops the decoder after pretraining (`strip_locca`). The decoder is
`bigvl.models.decoder.CaptionDecoder` (no unimodal layers, no CLS), so its KV cache and
step decoding are CoCa's.

Vocabulary (`bigvl.data.locca.LoccaVocab`): the text tokenizer's ids [0, V) keep their meaning, and the decoder's
table is longer: V + 4 + num_bins ids, the ones past the tokenizer reserved for LocCa:

    V + 0, 1, 2   task prompts: caption | referring expression (phrase → box) | grounded caption (box → text)
    V + 3         MASK: the decoder input at target positions of parallel-prediction examples
    V + 4 + k     coordinate bin k of num_bins (`quantise_box`)

Reserved ids past the tokenizer's, not sentencepiece pieces: any tokenizer (ours, Gemma's 256k)
works unchanged, and the text tower's table (model.text.vocab_size) does not grow.

Sequences (`bigvl.data.locca` writes them on the host): full = prompt + target, decoder input =
[BOS] + full[:-1], labels = pad over the prompt, then the target (the loss counts target
positions only):

    caption     prompt [CAP]                      target caption ids + EOS
    refexp      prompt [REF, phrase ids]          target x0 y0 x1 y1 (4 coordinate tokens)
    grounded    prompt [GCAP, x0 y0 x1 y1]        target phrase ids + EOS

Parallel prediction (CapPa, Tschannen et al. 2023; LocCa): for a fraction of the examples the
inputs at the target positions are all MASK, so each target token is predicted from the image
and the prompt alone. bigvl keeps the decoder's causal self-attention for them (its layers take
one mask for the whole batch); over all-MASK inputs a causal mask hides only constant tokens, so
what each position conditions on (image, prompt, position) is the same as without it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from bigvl.models.decoder import CaptionDecoder, token_nll
from bigvl.models.heads import l2_normalize, logit_scale
from bigvl.models.two_tower import TwoTower

# The ids past the tokenizer's before the coordinate bins: CAP, REF, GCAP, MASK (bigvl/data/locca.py LoccaVocab).
RESERVED_IDS = 4


def locca_config_defaults() -> ml_collections.ConfigDict:
    """Every `config.model.locca` key with its default (depth 0 = no LocCa decoder)."""
    return ml_collections.ConfigDict({
        "depth": 0,  # decoder layers; 0 = off (plain SigLIP). LocCa / CapPa: 6 at B/16
        "width": 0, "num_heads": 0, "mlp_dim": 0,  # 0 = the image tower's
        "context_length": 48,  # Ld: decoder input / label length (prompt + target)
        "num_bins": 64,  # coordinate tokens per axis (quantise_box); our 32-px demo: 32
        # Task sampling weights (caption, refexp, grounded); an example without a usable region is captioned.
        "task_weights": [1.0, 1.0, 1.0],
        # Fraction of examples with parallel prediction (all-MASK target inputs). CapPa: 0.75
        # (big_vision cappa configs, masked_pred_prob); SigLIP 2 §2.2 (as we read it): 0.5.
        "parallel_fraction": 0.5,
    })


class LoccaTwoTower(TwoTower):
    """TwoTower plus a LocCa decoder `locca` (params subtree "locca") on the image tower's patch tokens.

    __call__(images [B,S,S,3], tokens [B,L], with_patch_embeds=False, locca_inputs int [B,Ld] = None,
    locca_labels int [B,Ld] = None) → TwoTower's dict, plus locca_nll / locca_tokens float32 [B]
    (summed NLL and counted target tokens per example) when the LocCa inputs are given.
    The image tower runs once for both heads. encode_* are TwoTower's (the decoder is not used).
    """
    locca: CaptionDecoder | None = None
    pad_id: int = 0

    def __call__(self, images: jax.Array, tokens: jax.Array, with_patch_embeds: bool = False,
                 locca_inputs: jax.Array | None = None, locca_labels: jax.Array | None = None) -> dict:
        pooled, vit_tokens = self.image(images)
        if self.image_proj is not None:
            pooled = self.image_proj(pooled)
        out = {"image_embeds": l2_normalize(pooled), "text_embeds": self.encode_text(tokens),
               "logit_scale": logit_scale(self.log_logit_scale)}
        if with_patch_embeds:
            out["patch_embeds"] = l2_normalize(self.image_proj(vit_tokens) if self.image_proj is not None
                                               else vit_tokens)
        if self.bias_init is not None:
            out["logit_bias"] = self.logit_bias
        if locca_inputs is not None:
            logits = self.locca(locca_inputs, vit_tokens)[0]
            out["locca_nll"], out["locca_tokens"] = token_nll(logits, locca_labels, self.pad_id)
        elif self.is_initializing():  # create the decoder's params at init
            self.locca(jnp.zeros((images.shape[0], 1), jnp.int32), vit_tokens)
        return out

    def locca_logits(self, images: jax.Array, inputs: jax.Array) -> jax.Array:
        """images [B,S,S,3], decoder inputs int [B,T] (BOS first) → logits float32 [B,T,V'] (full recompute)."""
        return self.locca(inputs, self.image(images)[1])[0]


def locca_enabled(model_cfg) -> bool:
    """Whether `model.locca.depth` > 0 (configs saved before the key existed: no)."""
    locca = model_cfg.get("locca")
    return bool(locca is not None and locca.get("depth", 0) > 0)


def locca_vocab_size(model_cfg) -> int:
    """The decoder's table size: text vocab_size + RESERVED_IDS + num_bins (the ids: bigvl/data/locca.py)."""
    return int(model_cfg.text.vocab_size) + RESERVED_IDS + int(model_cfg.locca.num_bins)


def build_locca_decoder(model_cfg, image_size, options) -> CaptionDecoder:
    """`model.locca` → its CaptionDecoder (sizes 0 = the image tower's `image_size`). ValueError names the key."""
    cfg = model_cfg.locca
    if cfg.num_bins < 2:
        raise ValueError(f"config key 'model.locca.num_bins' must be >= 2, got {cfg.num_bins}")
    if len(cfg.task_weights) != 3 or min(cfg.task_weights) < 0 or sum(cfg.task_weights) <= 0:
        raise ValueError(f"config key 'model.locca.task_weights': one weight >= 0 per task (caption, refexp, "
                         f"grounded), not all 0, "
                         f"got {list(cfg.task_weights)}")
    if not 0.0 <= cfg.parallel_fraction <= 1.0:
        raise ValueError(f"config key 'model.locca.parallel_fraction' must be in [0, 1], got {cfg.parallel_fraction}")
    if cfg.context_length < 8:
        raise ValueError(f"config key 'model.locca.context_length' must be >= 8, got {cfg.context_length}")
    return CaptionDecoder(vocab_size=locca_vocab_size(model_cfg), context_length=cfg.context_length,
                          width=cfg.width or image_size.width, depth=cfg.depth,
                          num_heads=cfg.num_heads or image_size.num_heads, mlp_dim=cfg.mlp_dim or image_size.mlp_dim,
                          options=options)


def strip_locca(params: dict, model_cfg) -> tuple[dict, ml_collections.ConfigDict]:
    """(params without the "locca" subtree, a copy of `model_cfg` with locca.depth 0): the plain SigLIP
    model SigLIP 2 keeps after pretraining (`build_model` of that config takes those params)."""
    cfg = ml_collections.ConfigDict(model_cfg.to_dict())
    if "locca" in cfg:
        cfg.locca.depth = 0
    return {k: v for k, v in params.items() if k != "locca"}, cfg
