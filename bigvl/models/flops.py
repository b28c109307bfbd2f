"""Model FLOPs per image-text pair for every `model.kind`, from the config alone (no tracing).

Counting: matmuls only (every Dense / DenseGeneral, the attention scores Q·Kᵀ and the
weighted values), a multiply-add = 2 FLOPs; no LayerNorm, softmax, GELU, bias adds,
embedding lookups or losses. Attention is counted dense over every query and key (causal
and padding masks cost the same as XLA computes them). Per sequence, forward:

    encoder / causal self-attention layer over n tokens, width d, MLP m:
        8·n·d² + 4·n·d·m + 4·n²·d          (qkv + out proj, MLP, scores + values)
    which is the usual 24·n·d² + 4·n²·d per layer when m = 4·d (all named sizes but So400m);
    the last layer of a two-tower's tower computing only its pooled position
    (`model.pooled_last_block`, cls / token pooling, unrolled layers), keys and values of all n:
        4·n·d² + 4·d² + 4·d·m + 4·n·d
    cross-attention of n queries to M memory tokens of width dm (decoder layers):
        4·n·d² + 4·M·dm·d + 4·n·M·d        (q + out proj, memory kv proj, scores + values)
    one-query MAP head over n tokens:    4·d² + 4·n·d² + 4·n·d + 4·d·m
    attentional pooler (CoCa), Q queries over n tokens of width d:  4·Q·d² + 4·n·d² + 4·Q·n·d
    ViT patch embedding:  2·P·(3·p²)·d;   projection head: 2·d·E;   vocabulary logits: 2·L·d·V.

Per kind (T = texts per image, each through the text side; the decoder runs once per image):
- two_tower: image tower (+ MAP head when pooled so) + projection; T × (text tower + head
  + projection). What the program computes: with `model.pooled_last_block` (the default) the
  last layers count as above, which leaves out 6.9 % of ViT-B/16 CLIP's FLOPs; with it False
  the counts are open_clip's, which computes every position.
- coca: the ViT (its patch tokens feed two attentional poolers; its own pool head, unused,
  is dropped by XLA and not counted), the 1-query pooler + image projection; per text the
  unimodal causal layers over L + 1 positions (the CLS slot) + text projection; the decoder:
  the `num_queries` pooler, multimodal layers (causal self-attention, cross-attention to the
  pooled tokens, MLP) over the caption's positions and logits. Without a separate caption
  target the multimodal layers continue the first text's own unimodal stream, L positions
  (as open_clip's CoCa); with one (`data.target_field`) the decoder first runs the unimodal
  layers over the target, Ld + 1 positions (Ld = `decoder.context_length`).
- clips: both towers as two_tower (T texts); the decoder: the memory adapters (image
  tokens and the conditioning text's tokens → decoder width), multimodal layers over Ld
  target positions cross-attending to [image tokens ; conditioning text] (P + L tokens),
  and logits.

n counts every token an encoder sees (the cls token included; the full, padded context).
Training = 3 × forward; rematerialisation and GradCache recomputation are not counted (MFU
uses model FLOPs). Batch-independent matmuls (the MAP probe's and the poolers' query
projections) are counted once per pair, i.e. as at batch 1.
Reproduces open_clip's profiler numbers: ViT-B/16 CLIP @224 image 35.13, text 5.96 GFLOPs.
"""
from __future__ import annotations

from bigvl.models.build import image_size_of, text_size_of
from bigvl.models.captioners import decoder_size
from bigvl.models.sizes import TransformerSize


def encoder_flops(size: TransformerSize, num_tokens: int, pooled_last: bool = False) -> int:
    """Forward FLOPs of `size.depth` pre-LN self-attention blocks over `num_tokens` tokens (per
    sequence); `pooled_last`: the last block computes one position's output (`Encoder`'s keep)."""
    if not pooled_last:
        return size.depth * self_attention_layer_flops(size.width, size.mlp_dim, num_tokens)
    n, d, m = num_tokens, size.width, size.mlp_dim
    last = 4 * n * d * d + 4 * d * d + 4 * d * m + 4 * n * d  # k, v of all; q, out, MLP, attention of one
    return (size.depth - 1) * self_attention_layer_flops(d, m, n) + last


def self_attention_layer_flops(width: int, mlp_dim: int, num_tokens: int) -> int:
    """One self-attention + MLP layer over `num_tokens` tokens: 8·n·d² + 4·n·d·m + 4·n²·d."""
    n, d, m = num_tokens, width, mlp_dim
    return 8 * n * d * d + 4 * n * d * m + 4 * n * n * d


def cross_attention_flops(width: int, num_tokens: int, memory_tokens: int, memory_width: int) -> int:
    """Cross-attention of `num_tokens` queries (width d) to a memory [M, dm]: 4·n·d² + 4·M·dm·d + 4·n·M·d."""
    n, d, mem, dm = num_tokens, width, memory_tokens, memory_width
    return 4 * n * d * d + 4 * mem * dm * d + 4 * n * mem * d


def map_head_flops(size: TransformerSize, num_tokens: int) -> int:
    """Forward FLOPs of a one-query MAP head over `num_tokens` tokens (per sequence)."""
    n, d, m = num_tokens, size.width, size.mlp_dim
    return 2 * d * d + 4 * n * d * d + 4 * n * d + 2 * d * d + 4 * d * m


def attentional_pooler_flops(width: int, num_queries: int, num_tokens: int) -> int:
    """CoCa's attentional pooler, Q queries over n tokens of width d: q, kv, attention, out projections."""
    q, n, d = num_queries, num_tokens, width
    return 2 * q * d * d + 4 * n * d * d + 4 * q * n * d + 2 * q * d * d


def vit_flops(image_cfg, with_pool_head: bool = True, pooled_last: bool = False) -> tuple[int, int]:
    """`model.image` → (forward FLOPs of the ViT, patch tokens P it outputs).

    The patch embedding and encoder, plus the MAP head when `pool == "map"` and
    `with_pool_head` (CoCa uses only the patch tokens). No projection. `pooled_last`: the last
    block computes the cls position only (applies with cls pooling).
    """
    size = image_size_of(image_cfg)
    patches = (image_cfg.image_size // size.patch_size) ** 2
    tokens = patches + (1 if image_cfg.pool == "cls" else 0)
    pooled = pooled_last and image_cfg.pool == "cls"
    if image_cfg.get("stem", "patch") == "conv":  # stride-2 3×3 convolutions, then a 1×1 projection
        from bigvl.models.vit import conv_stem_channels
        flops, side, channels = 0, image_cfg.image_size, 3
        for out in conv_stem_channels(size.width, size.patch_size):
            side //= 2
            flops += 2 * side * side * 9 * channels * out
            channels = out
        flops += 2 * patches * channels * size.width + encoder_flops(size, tokens, pooled)
    else:
        flops = 2 * patches * (3 * size.patch_size ** 2) * size.width + encoder_flops(size, tokens, pooled)
    if with_pool_head and image_cfg.pool == "map":
        flops += map_head_flops(size, tokens)
    return flops, patches


def text_tower_flops(text_cfg, pooled_last: bool = False) -> int:
    """`model.text` → forward FLOPs of one text through the text tower and its pool head (no
    projection); `pooled_last`: the last block computes the pooled position only (not for MAP)."""
    size = text_size_of(text_cfg)
    flops = encoder_flops(size, text_cfg.context_length, pooled_last and text_cfg.pool != "map")
    if text_cfg.pool == "map":
        flops += map_head_flops(size, text_cfg.context_length)
    return flops


def decoder_layers_flops(size: TransformerSize, num_tokens: int, memory_tokens: int, memory_width: int) -> int:
    """`size.depth` multimodal layers (causal self-attention, cross-attention, MLP) over `num_tokens`."""
    per_layer = (self_attention_layer_flops(size.width, size.mlp_dim, num_tokens)
                 + cross_attention_flops(size.width, num_tokens, memory_tokens, memory_width))
    return size.depth * per_layer


def _two_tower(model_cfg, pooled_last: bool = True) -> tuple[int, int, int]:
    ic, tc, e = model_cfg.image, model_cfg.text, model_cfg.embed_dim
    # TwoTower's encoders; scanned layers run every position (`transformer.Encoder`).
    pooled_last = pooled_last and model_cfg.get("pooled_last_block", True) and not model_cfg.get("scan_layers", False)
    image, _ = vit_flops(ic, pooled_last=pooled_last)
    if ic.proj:
        image += 2 * image_size_of(ic).width * e
    text = text_tower_flops(tc, pooled_last)
    if tc.proj:
        text += 2 * text_size_of(tc).width * e
    return image, text, 0


def _coca(model_cfg, caption_target: bool) -> tuple[int, int, int]:
    ic, tc, dc, e = model_cfg.image, model_cfg.text, model_cfg.decoder, model_cfg.embed_dim
    image_width = image_size_of(ic).width
    tsz = text_size_of(tc)
    dsz = decoder_size(model_cfg, tsz)  # the unimodal layers are built with the decoder's width and MLP
    vit, patches = vit_flops(ic, with_pool_head=False)
    image = vit + attentional_pooler_flops(image_width, 1, patches) + 2 * image_width * e

    def unimodal(length: int) -> int:  # text tokens + the CLS slot
        return tsz.depth * self_attention_layer_flops(dsz.width, dsz.mlp_dim, length + 1)

    text = unimodal(tc.context_length) + 2 * dsz.width * e
    target = dc.context_length if caption_target else tc.context_length
    decoder = (attentional_pooler_flops(image_width, dc.num_queries, patches)
               + (unimodal(target) if caption_target else 0)
               + decoder_layers_flops(dsz, target, dc.num_queries, image_width)
               + 2 * target * dsz.width * tc.vocab_size)
    return image, text, decoder


def _clips(model_cfg, caption_target: bool) -> tuple[int, int, int]:
    tc, dc = model_cfg.text, model_cfg.decoder
    image, text, _ = _two_tower(model_cfg, pooled_last=False)  # the decoder reads every position
    _, patches = vit_flops(model_cfg.image)
    image_width, tsz = image_size_of(model_cfg.image).width, text_size_of(tc)
    dsz = decoder_size(model_cfg, tsz)
    target = dc.context_length if caption_target else tc.context_length
    memory_tokens = patches + tc.context_length  # [image tokens ; the conditioning text's tokens]
    decoder = (2 * patches * image_width * dsz.width + 2 * tc.context_length * tsz.width * dsz.width
               + decoder_layers_flops(dsz, target, memory_tokens, dsz.width)
               + 2 * target * dsz.width * tc.vocab_size)
    return image, text, decoder


def model_flops_per_pair(model_cfg, texts_per_image: int = 1, *, caption_target: bool = True
                         ) -> dict[str, float]:
    """`config.model` → {image, text, decoder, total_forward, train} FLOPs for one image and its texts.

    texts_per_image: T, the texts the caption strategy gives each image (`num_texts`), each
    through the text side. caption_target (captioners only): the batch carries a separate
    caption target of `model.decoder.context_length` tokens (`data.target_field` set; the
    train-step benchmark always gives one); False = the decoder captions the first
    contrastive text (L = `model.text.context_length`).
    image: forward FLOPs of the image side including its pooler and projection; text: T × one
    text's (tower or unimodal layers, projection); decoder: the captioner's decoder and
    logits (0 for two_tower); total_forward = image + text + decoder; train = 3 · total_forward.
    See the module docstring for what is counted.
    """
    if int(texts_per_image) != texts_per_image or texts_per_image < 1:
        raise ValueError(f"texts_per_image must be an integer >= 1, got {texts_per_image!r}")
    kind = model_cfg.get("kind", "two_tower")
    if kind == "two_tower":
        image, text, decoder = _two_tower(model_cfg)
    elif kind == "coca":
        image, text, decoder = _coca(model_cfg, caption_target)
    elif kind == "clips":
        image, text, decoder = _clips(model_cfg, caption_target)
    else:
        raise ValueError(f"model.kind {kind!r} has no FLOPs count (two_tower, coca, clips)")
    text *= texts_per_image
    forward = image + text + decoder
    return {"image": float(image), "text": float(text), "decoder": float(decoder),
            "total_forward": float(forward), "train": 3.0 * forward}
