"""Building the captioning models (CoCa, CLIPS) from `config.model` (kind, decoder keys)."""
from __future__ import annotations

import functools

import flax.linen as nn

from bigvl.models.clips import CLIPS
from bigvl.models.coca import CoCa
from bigvl.models.decoder import CaptionDecoder
from bigvl.models.options import ModelOptions
from bigvl.models.rope import rope_from_config
from bigvl.models.sizes import TransformerSize
from bigvl.models.sycoca import SyCoCa
from bigvl.models.text import TextTower
from bigvl.models.vit import VisionTower

KINDS = ("two_tower", "coca", "clips")


def decoder_size(model_cfg, text_size: TransformerSize) -> TransformerSize:
    """The multimodal decoder's size: `model.decoder.*`, zeros taken from the text tower."""
    d = model_cfg.decoder
    size = TransformerSize(width=d.width or text_size.width, depth=d.depth or text_size.depth,
                           mlp_dim=d.mlp_dim or text_size.mlp_dim, num_heads=d.num_heads or text_size.num_heads)
    if size.width % size.num_heads:
        raise ValueError(f"model.decoder: width {size.width} is not divisible by num_heads {size.num_heads}")
    return size


def build_captioner(model_cfg, image: VisionTower, text: TextTower, text_size: TransformerSize,
                    options: ModelOptions) -> nn.Module:
    """`model.kind` 'coca' or 'clips' → the unbound model (towers already built by build_model)."""
    kind, d = model_cfg.kind, model_cfg.decoder
    dsz = decoder_size(model_cfg, text_size)
    rope = rope_from_config(model_cfg.text)  # the decoder's positions follow the text tower's
    shared = dict(temperature_init=float(model_cfg.temperature_init), bos_id=model_cfg.text.bos_id,
                  eos_id=model_cfg.text.eos_id, pad_id=model_cfg.text.pad_id, options=options)
    if model_cfg.bias_init is not None:
        raise ValueError(f"config key 'model.bias_init' must be None for model.kind {kind!r} (softmax loss only)")
    if d.context_length < 2:
        raise ValueError(f"config key 'model.decoder.context_length' must be ≥ 2, got {d.context_length}")
    if kind == "coca":
        if dsz.width != text_size.width:
            raise ValueError(f"model.decoder.width {dsz.width} must equal the text width {text_size.width} "
                             "for CoCa (the multimodal layers continue the text stream)")
        heads = d.pooler_heads or image.num_heads
        if image.width % heads:
            raise ValueError(f"model.decoder.pooler_heads {heads} does not divide the image width {image.width}")
        decoder = CaptionDecoder(vocab_size=model_cfg.text.vocab_size,
                                 context_length=max(d.context_length, model_cfg.text.context_length),
                                 width=dsz.width, depth=dsz.depth, num_heads=dsz.num_heads, mlp_dim=dsz.mlp_dim,
                                 uni_depth=text_size.depth, cls_token=True, options=options, rope=rope)
        drop, ratio = float(d.get("image_drop", 0.0)), float(d.get("mim_mask_ratio", 0.0))
        if not 0.0 <= drop < 1.0:
            raise ValueError(f"config key 'model.decoder.image_drop' must be in [0, 1), got {drop}")
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"config key 'model.decoder.mim_mask_ratio' must be in [0, 1), got {ratio}")
        coca = functools.partial(SyCoCa, mask_ratio=ratio) if ratio > 0 else CoCa
        return coca(image=image, decoder=decoder, embed_dim=model_cfg.embed_dim, num_queries=d.num_queries,
                    pooler_heads=heads, image_drop=drop, **shared)
    decoder = CaptionDecoder(vocab_size=model_cfg.text.vocab_size, context_length=d.context_length,
                             width=dsz.width, depth=dsz.depth, num_heads=dsz.num_heads, mlp_dim=dsz.mlp_dim,
                             uni_depth=0, cls_token=False, options=options, rope=rope)
    return CLIPS(image=image, text=text, decoder=decoder, embed_dim=model_cfg.embed_dim, cond_slot=d.cond_slot,
                 **shared)
