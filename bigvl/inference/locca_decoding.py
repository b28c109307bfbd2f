"""Greedy box decoding with SigLIP 2's LocCa decoder: phrase → (x0, y0, x1, y1), as the refexp evaluator reads it.

    decoder = make_locca_decoder(model, model_cfg, rules)     # None for a model without the decoder
    boxes = decoder.decode_boxes(params, images, phrases)     # float64 [Q, 4], fractions of the side

The decoder input is [BOS, REF, phrase ids] then the four coordinate tokens, each the argmax over the
coordinate ids alone (bigvl/models/locca.py's vocabulary), written back before the next step. Four
full recomputes of a short sequence (no KV cache: 4 steps over ≤ Ld tokens cost less than setting one up).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import numpy as np

from bigvl.data.locca import LoccaTargets, dequantise_box
from bigvl.models.locca import locca_enabled


@dataclasses.dataclass(frozen=True)
class LoccaBoxDecoder:
    logits: Callable  # jitted (params, images [B,S,S,3], inputs int32 [B,Ld]) → float32 [B,Ld,V']
    targets: LoccaTargets

    def decode_boxes(self, params, images: np.ndarray, phrases: list[str], tokenizer,
                     batch_size: int = 256) -> np.ndarray:
        """images uint8 [Q,S,S,3] (one per phrase), phrases [Q] → greedy boxes float64 [Q, 4] (x0, y0, x1, y1)."""
        t, vocab = self.targets, self.targets.vocab
        prompts = [t.refexp_prompt(tokenizer, phrase) for phrase in phrases]
        inputs = np.full((len(phrases), t.length), t.pad_id, np.int32)
        for i, prompt in enumerate(prompts):
            inputs[i, :len(prompt) + 1] = [t.bos_id] + prompt
        starts = np.asarray([len(p) for p in prompts])
        rows = np.arange(len(phrases))
        bins = np.zeros((len(phrases), 4), np.int64)
        lo, hi = vocab.coord_offset, vocab.coord_offset + vocab.num_bins
        for k in range(4):
            logits = np.concatenate([np.asarray(self.logits(params, images[s:s + batch_size], inputs[s:s + batch_size]))
                                     [np.arange(min(batch_size, len(phrases) - s)), starts[s:s + batch_size] + k]
                                     for s in range(0, len(phrases), batch_size)])
            bins[:, k] = np.argmax(logits[:, lo:hi], axis=-1)
            if k < 3:
                inputs[rows, starts + k + 1] = lo + bins[:, k]
        return dequantise_box(bins, vocab.num_bins)


def make_locca_decoder(model, model_cfg, rules) -> LoccaBoxDecoder | None:
    """The box decoder of a model with a LocCa decoder (model.locca.depth > 0), else None."""
    method = getattr(type(model), "locca_logits", None)
    if method is None or not locca_enabled(model_cfg):
        return None

    @jax.jit
    def logits(params, images, inputs):
        with nn.logical_axis_rules(rules):
            return model.apply({"params": params}, images, inputs, method=method)
    return LoccaBoxDecoder(logits, LoccaTargets.from_config(model_cfg))
