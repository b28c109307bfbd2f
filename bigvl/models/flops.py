"""Model FLOPs per image-text pair, from the config alone (no tracing).

Per tower, forward, counting a multiply-add as 2 FLOPs and only matmuls:
    L · (8·N·D² + 4·N·D·M + 4·N²·D)      (qkv + out proj, MLP, attention scores + values)
which is SPEC's L·(24·N·D² + 4·N²·D) when M = 4·D (all named sizes but So400m); plus
- image: patch embedding 2·N_p·(3·P²)·D, and a MAP head when pooled so (1 query);
- text: nothing for the embedding lookup; a MAP head when pooled so;
- each enabled projection head: 2·D·E.
N counts every token the encoder sees (the cls token included; the full, padded text
context). Training = 3 × forward; rematerialisation is not counted (MFU uses model FLOPs).
Reproduces open_clip's profiler numbers: ViT-B/16 CLIP @224 image 35.13, text 5.96 GFLOPs.
"""
from __future__ import annotations

from bigvl.models import image_size_of, text_size_of
from bigvl.models.sizes import TransformerSize


def encoder_flops(size: TransformerSize, num_tokens: int) -> int:
    """Forward FLOPs of `size.depth` pre-LN blocks over `num_tokens` tokens (per sequence)."""
    n, d, m = num_tokens, size.width, size.mlp_dim
    return size.depth * (8 * n * d * d + 4 * n * d * m + 4 * n * n * d)


def map_head_flops(size: TransformerSize, num_tokens: int) -> int:
    """Forward FLOPs of a one-query MAP head over `num_tokens` tokens (per sequence)."""
    n, d, m = num_tokens, size.width, size.mlp_dim
    return 2 * d * d + 4 * n * d * d + 4 * n * d + 2 * d * d + 4 * d * m


def model_flops_per_pair(model_cfg) -> dict[str, float]:
    """`config.model` → {image, text, total_forward, train} FLOPs for one image-text pair.

    image/text: forward FLOPs of each tower including its projection head; total_forward =
    image + text; train = 3 · total_forward.
    """
    image_cfg, text_cfg, embed_dim = model_cfg.image, model_cfg.text, model_cfg.embed_dim
    isz, tsz = image_size_of(image_cfg), text_size_of(text_cfg)

    patches = (image_cfg.image_size // isz.patch_size) ** 2
    image_tokens = patches + (1 if image_cfg.pool == "cls" else 0)
    image = 2 * patches * (3 * isz.patch_size ** 2) * isz.width + encoder_flops(isz, image_tokens)
    if image_cfg.pool == "map":
        image += map_head_flops(isz, image_tokens)
    if image_cfg.proj:
        image += 2 * isz.width * embed_dim

    text_tokens = text_cfg.context_length
    text = encoder_flops(tsz, text_tokens)
    if text_cfg.pool == "map":
        text += map_head_flops(tsz, text_tokens)
    if text_cfg.proj:
        text += 2 * tsz.width * embed_dim

    forward = image + text
    return {"image": float(image), "text": float(text), "total_forward": float(forward), "train": 3.0 * forward}
