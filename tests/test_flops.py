"""Model FLOPs per pair for every model kind, against independent references:

- open_clip's published profiler numbers (ViT-B/16 CLIP) and the closed formula L·(24·N·D² + 4·N²·D);
- hand counts of tiny models, every matmul written out as 2 · rows · inner · cols;
- the matmuls the model really traces (every dot_general of its jaxpr), exactly;
- XLA's own count of the compiled forward pass (`cost_analysis()["flops"]`), within a tolerance.
"""
import math

import jax
import jax.numpy as jnp
import pytest
from jax.extend import core as jex_core

from bigvl.models import build_model, model_config_defaults
from bigvl.models.flops import model_flops_per_pair


def clip_b16():
    c = model_config_defaults()
    c.image.variant, c.image.image_size, c.image.pool = "B/16", 224, "cls"
    c.text.variant, c.text.width, c.text.num_heads, c.text.mlp_dim = "B", 512, 8, 2048
    c.embed_dim = 512
    return c


def test_vit_b16_clip_matches_open_clip_profile():
    c = clip_b16()
    c.pooled_last_block = False  # open_clip computes every position of the last blocks
    flops = model_flops_per_pair(c)
    # open_clip docs/model_profile.csv, ViT-B-16: image 35.13, text 5.96, total 41.09 GFLOPs.
    assert flops["image"] / 1e9 == pytest.approx(35.13, abs=0.01)
    assert flops["text"] / 1e9 == pytest.approx(5.96, abs=0.01)
    assert flops["decoder"] == 0
    assert flops["total_forward"] / 1e9 == pytest.approx(41.09, abs=0.01)
    # ViT-B/16 CLIP @224 is about 123 GFLOPs per pair per training step (3 × open_clip's 35.13 + 5.96).
    assert flops["train"] / 1e9 == pytest.approx(123, rel=0.01)
    # Two texts per image (e.g. strategy `dual`): each goes through the 5.96 GFLOP text tower.
    two = model_flops_per_pair(c, texts_per_image=2)
    assert two["image"] / 1e9 == pytest.approx(35.13, abs=0.01)
    assert two["text"] / 1e9 == pytest.approx(2 * 5.96, abs=0.02)
    assert two["train"] / 1e9 == pytest.approx(3 * (35.13 + 2 * 5.96), abs=0.05)


def test_pooled_last_block_leaves_out_the_last_blocks_other_positions():
    """bigvl's default: each tower's last block computes its pooled position only (by hand, B/16:
    197 image tokens of width 768, MLP 3072; 77 text tokens of width 512, MLP 2048)."""
    full, pooled = clip_b16(), clip_b16()
    full.pooled_last_block = False
    one_layer = lambda n, d, m: 8 * n * d * d + 4 * n * d * m + 4 * n * n * d
    one_position = lambda n, d, m: 4 * n * d * d + 4 * d * d + 4 * d * m + 4 * n * d
    a, b = model_flops_per_pair(full), model_flops_per_pair(pooled)
    assert a["image"] - b["image"] == one_layer(197, 768, 3072) - one_position(197, 768, 3072)
    assert a["text"] - b["text"] == one_layer(77, 512, 2048) - one_position(77, 512, 2048)
    assert 1 - b["total_forward"] / a["total_forward"] == pytest.approx(0.069, abs=0.001)
    full.scan_layers = pooled.scan_layers = True  # scanned towers run every position
    assert model_flops_per_pair(full) == model_flops_per_pair(pooled)


def test_mlp_4x_reduces_to_spec_formula():
    c = clip_b16()
    c.image.pool, c.image.proj, c.text.proj = "gap", False, False
    c.pooled_last_block = False  # the SPEC's formula: every position of every layer
    c.embed_dim = 768
    c.text.width, c.text.num_heads, c.text.mlp_dim = 768, 12, 3072
    n, d, layers, p = 196, 768, 12, 16
    spec_image = layers * (24 * n * d * d + 4 * n * n * d) + 2 * n * (3 * p * p) * d
    spec_text = layers * (24 * 77 * d * d + 4 * 77 * 77 * d)
    flops = model_flops_per_pair(c)
    assert flops["image"] == spec_image and flops["text"] == spec_text


def test_rejects_bad_texts_per_image_and_unknown_kind():
    with pytest.raises(ValueError, match="texts_per_image"):
        model_flops_per_pair(clip_b16(), texts_per_image=0)
    c = clip_b16()
    c.kind = "nope"
    with pytest.raises(ValueError, match="nope"):
        model_flops_per_pair(c)


# ---------------------------------------------------------------------------------------------
# Hand counts. Tiny models: 8x8 images, patch 4 (4 patches, 48 pixel values each), width 8,
# 1 layer, MLP 16, text context 3, vocab 10, embed 4. Every term is one matmul, 2·rows·inner·cols
# (attention: scores 2·queries·keys·width and values 2·queries·keys·width, summed over heads).

def tiny(kind: str):
    c = model_config_defaults()
    c.kind = kind
    c.image.update(variant="custom", image_size=8, patch_size=4, width=8, depth=1, num_heads=2, mlp_dim=16, pool="cls")
    c.text.update(variant="custom", vocab_size=10, context_length=3, width=8, depth=1, num_heads=2, mlp_dim=16)
    c.decoder.update(depth=1, context_length=4, num_queries=2, pooler_heads=2)
    c.embed_dim = 4
    return c


# The ViT: patch embedding, then one layer over 5 tokens (4 patches + cls).
VIT = (2 * 4 * 48 * 8  # patch embedding: 4 patches × 48 → 8
       + 2 * 5 * 8 * 24  # qkv: 5 tokens × 8 → 24
       + 2 * 5 * 5 * 8 + 2 * 5 * 5 * 8  # scores (5 × 5) and values
       + 2 * 5 * 8 * 8  # out: 8 → 8
       + 2 * 5 * 8 * 16 + 2 * 5 * 16 * 8)  # MLP 8 → 16 → 8
# One layer over the 3 text tokens.
TEXT_LAYER = 2 * 3 * 8 * 24 + 2 * 3 * 3 * 8 + 2 * 3 * 3 * 8 + 2 * 3 * 8 * 8 + 2 * 3 * 8 * 16 + 2 * 3 * 16 * 8
PROJ = 2 * 1 * 8 * 4  # one pooled vector 8 → 4


def test_hand_count_two_tower():
    assert VIT == 3072 + 1920 + 800 + 640 + 2560 and TEXT_LAYER == 1152 + 288 + 384 + 1536
    c = tiny("two_tower")
    c.pooled_last_block = False  # every position of the (only, so last) layer
    flops = model_flops_per_pair(c, texts_per_image=2)
    assert flops["image"] == VIT + PROJ == 9056
    assert flops["text"] == 2 * (TEXT_LAYER + PROJ) == 6848
    assert flops["decoder"] == 0
    assert flops["total_forward"] == 15904 and flops["train"] == 3 * 15904


def test_hand_count_two_tower_pooled_last_block():
    """The default: the one layer computes keys and values of every position, the rest for the
    pooled one (image: cls of 5 tokens; text: its eos of 3)."""
    vit = (2 * 4 * 48 * 8  # patch embedding
           + 2 * 5 * 8 * 16 + 2 * 1 * 8 * 8  # k, v of 5 tokens; q of one
           + 2 * 1 * 5 * 8 + 2 * 1 * 5 * 8  # one query's scores and values
           + 2 * 1 * 8 * 8 + 2 * 1 * 8 * 16 + 2 * 1 * 16 * 8)  # out, MLP of one
    text = 2 * 3 * 8 * 16 + 2 * 8 * 8 + 2 * 3 * 8 + 2 * 3 * 8 + 2 * 8 * 8 + 2 * 8 * 16 + 2 * 16 * 8
    flops = model_flops_per_pair(tiny("two_tower"), texts_per_image=2)
    assert flops["image"] == vit + PROJ == 5344
    assert flops["text"] == 2 * (text + PROJ) == 3392


def causal_layer(n: int, memory: int, memory_width: int = 8) -> int:
    """One width-8 decoder layer over n tokens: causal self-attention, [cross-attention to memory], MLP 16."""
    self_attn = 2 * n * 8 * 24 + 2 * n * n * 8 + 2 * n * n * 8 + 2 * n * 8 * 8
    cross = (2 * n * 8 * 8  # q
             + 2 * memory * memory_width * 16  # memory keys and values: memory_width → 16
             + 2 * n * memory * 8 + 2 * n * memory * 8  # scores and values
             + 2 * n * 8 * 8) if memory else 0  # out
    return self_attn + cross + 2 * n * 8 * 16 + 2 * n * 16 * 8


def test_hand_count_coca():
    # Poolers read the 4 patch tokens (not the cls token): q of the queries, kv, scores, values, out.
    contrastive_pooler = 2 * 1 * 8 * 8 + 2 * 4 * 8 * 16 + 2 * 1 * 4 * 8 + 2 * 1 * 4 * 8 + 2 * 1 * 8 * 8
    caption_pooler = 2 * 2 * 8 * 8 + 2 * 4 * 8 * 16 + 2 * 2 * 4 * 8 + 2 * 2 * 4 * 8 + 2 * 2 * 8 * 8
    assert (contrastive_pooler, caption_pooler) == (1408, 1792)
    image = VIT + contrastive_pooler + PROJ
    text = causal_layer(3 + 1, memory=0) + PROJ  # unimodal layer over 3 tokens + the CLS slot
    assert (image, text) == (10464, 4672)

    # One text, no separate target: the multimodal layer continues over the 3 text positions.
    one_pass = model_flops_per_pair(tiny("coca"), texts_per_image=1, caption_target=False)
    logits = 2 * 3 * 8 * 10
    assert causal_layer(3, memory=2) == 4832
    assert one_pass["image"] == image and one_pass["text"] == text
    assert one_pass["decoder"] == caption_pooler + causal_layer(3, memory=2) + logits == 7104

    # Two texts and no target: both texts through the unimodal layer; the decoder as above.
    two_texts = model_flops_per_pair(tiny("coca"), texts_per_image=2, caption_target=False)
    assert two_texts["text"] == 2 * text and two_texts["decoder"] == 7104

    # Two texts and a 4-token caption target: both texts through the unimodal layer, then the
    # decoder runs the unimodal layer over its target (+ CLS slot) before the multimodal one.
    target = model_flops_per_pair(tiny("coca"), texts_per_image=2, caption_target=True)
    assert target["image"] == image and target["text"] == 2 * text
    decoder = caption_pooler + causal_layer(4 + 1, memory=0) + causal_layer(4, memory=2) + 2 * 4 * 8 * 10
    assert target["decoder"] == decoder == 1792 + 5920 + 6400 + 640
    assert target["total_forward"] == 10464 + 9344 + 14752


def test_hand_count_clips():
    flops = model_flops_per_pair(tiny("clips"), texts_per_image=2, caption_target=True)
    assert flops["image"] == VIT + PROJ and flops["text"] == 2 * (TEXT_LAYER + PROJ)
    memory = 2 * 4 * 8 * 8 + 2 * 3 * 8 * 8  # adapters: 4 image tokens and 3 conditioning-text tokens → 8
    layer = causal_layer(4, memory=4 + 3)  # 4 target positions over [image ; text] memory
    logits = 2 * 4 * 8 * 10
    assert flops["decoder"] == memory + layer + logits == 896 + 8320 + 640
    # Without a target the decoder captions the first contrastive text (3 positions).
    no_target = model_flops_per_pair(tiny("clips"), texts_per_image=2, caption_target=False)
    assert no_target["decoder"] == memory + causal_layer(3, memory=7) + 2 * 3 * 8 * 10


# ---------------------------------------------------------------------------------------------
# What the model really computes: every dot_general it traces (exact), and XLA's count of the
# compiled forward pass (approximate).

def small(kind: str, width: int, image_pool: str = "cls", text_pool: str = "eos", decoder_mlp: int = 0):
    """A one-layer model of `kind`: 32 px / patch 4 (64 patches), text context 16, decoder 24 positions."""
    c = model_config_defaults()
    c.kind = kind
    c.image.update(variant="custom", image_size=32, patch_size=4, width=width, depth=1, num_heads=4,
                   mlp_dim=4 * width, pool=image_pool)
    c.text.update(variant="custom", vocab_size=512, context_length=16, width=width, depth=1, num_heads=4,
                  mlp_dim=4 * width, pool=text_pool, causal=text_pool != "map")
    c.decoder.update(depth=1, context_length=24, num_queries=16, pooler_heads=4, mlp_dim=decoder_mlp)
    c.embed_dim = 64
    return c


def forward_and_inputs(c, texts_per_image: int, caption_target: bool):
    """(forward(params, *inputs), abstract params, inputs) for one image with its texts (batch 1)."""
    model = build_model(c)
    inputs = (jnp.zeros((1, c.image.image_size, c.image.image_size, 3), jnp.uint8),
              jnp.zeros((texts_per_image, c.text.context_length), jnp.int32))
    if caption_target:
        inputs += (jnp.zeros((1, c.decoder.context_length), jnp.int32),)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs)["params"])
    return (lambda p, *a: model.apply({"params": p}, *a)), params, inputs


def dot_flops(jaxpr) -> int:
    """2 · (output size) · (contracted size), summed over every dot_general, sub-jaxprs included
    (a scan's body `length` times: `model.scan_layers`)."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[a] for a in contract)
        repeats = eqn.params["length"] if eqn.primitive.name == "scan" else 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(sub, jex_core.ClosedJaxpr):
                    total += repeats * dot_flops(sub.jaxpr)
                elif isinstance(sub, jex_core.Jaxpr):
                    total += repeats * dot_flops(sub)
    return total


@pytest.mark.parametrize("image_pool, text_pool, proj, scan_layers", [
    ("cls", "eos", True, False), ("map", "map", False, False), ("gap", "last", True, True)])
def test_two_tower_counts_every_traced_matmul(image_pool, text_pool, proj, scan_layers):
    c = model_config_defaults()
    c.scan_layers = scan_layers
    c.image.update(variant="custom", image_size=32, patch_size=8, width=48, depth=2, num_heads=4, mlp_dim=80,
                   pool=image_pool, proj=proj)
    c.text.update(variant="custom", vocab_size=100, context_length=12, width=48, depth=3, num_heads=4,
                  mlp_dim=144, pool=text_pool, proj=proj, causal=text_pool == "eos")
    c.embed_dim = 32 if proj else 48
    forward, params, inputs = forward_and_inputs(c, 1, False)
    flops = model_flops_per_pair(c)
    assert flops["total_forward"] == dot_flops(jax.make_jaxpr(forward)(params, *inputs).jaxpr)


# (kind, T, caption target, image pool, text pool, decoder MLP). The CoCa image pools are cls/gap:
# with "map" the ViT's own MAP head is traced but unused (XLA drops it; see the XLA test).
TRACED = [("two_tower", 2, False, "cls", "eos", 0),
          ("coca", 1, False, "cls", "eos", 0),
          ("coca", 2, True, "gap", "eos", 96),  # the unimodal layers use the decoder's MLP width
          ("coca", 2, False, "cls", "eos", 0),
          ("clips", 2, True, "cls", "eos", 0),
          ("clips", 1, False, "map", "map", 0)]


@pytest.mark.parametrize("kind, texts, target, image_pool, text_pool, decoder_mlp", TRACED)
def test_every_kind_counts_every_traced_matmul(kind, texts, target, image_pool, text_pool, decoder_mlp):
    c = small(kind, 32, image_pool, text_pool, decoder_mlp)
    forward, params, inputs = forward_and_inputs(c, texts, target)
    flops = model_flops_per_pair(c, texts, caption_target=target)
    assert flops["total_forward"] == dot_flops(jax.make_jaxpr(forward)(params, *inputs).jaxpr)


# XLA counts each dot as 2·M·N·K, like us, but also every elementwise op at 1 FLOP per element
# (LayerNorm, GELU, softmax, residual and bias adds, masks, the caption cross-entropy) and its
# exp/tanh/rsqrt as 'transcendentals', not FLOPs. Those are O(n·d) per layer against O(n·d²)
# matmuls, so at width 256 they add 1.2-1.5 % (measured for every case below; at width 32 it is
# 11-13 %). XLA only removes dead code (CoCa's unused ViT MAP head, which we do not count), so
# its count can never be below ours: 1.00 ≤ XLA / ours ≤ 1.03.
COMPILED = [("two_tower", 2, False, "map", "map"),
            ("coca", 1, False, "cls", "eos"),
            ("coca", 2, True, "map", "eos"),
            ("clips", 2, True, "cls", "eos")]


@pytest.mark.parametrize("kind, texts, target, image_pool, text_pool", COMPILED)
def test_every_kind_matches_xla_cost_analysis(kind, texts, target, image_pool, text_pool):
    c = small(kind, 256, image_pool, text_pool)
    forward, params, inputs = forward_and_inputs(c, texts, target)
    # LLVM's optimisation level does not change the HLO XLA counts (its HLO passes, dead-code
    # elimination included, still run), and level 0 compiles about 3x faster.
    compiled = jax.jit(forward).lower(params, *inputs).compile({"xla_backend_optimization_level": 0})
    xla = compiled.cost_analysis()["flops"]
    ours = model_flops_per_pair(c, texts, caption_target=target)["total_forward"]
    assert 1.0 <= xla / ours <= 1.03, (xla, ours)


def test_conv_stem_matches_xla_cost_analysis():
    """model.image.stem = 'conv': the stride-2 3×3 convolutions (not dot_generals) are counted too."""
    c = small("two_tower", 256)
    c.pooled_last_block = False  # the whole layer beside the stem, as the 0.3 % below assumes
    c.image.stem = "conv"  # 32 px, patch 4: two convolutions, 3 → 128 → 256 channels, then 1×1 to 256
    forward, params, inputs = forward_and_inputs(c, 1, False)
    compiled = jax.jit(forward).lower(params, *inputs).compile({"xla_backend_optimization_level": 0})
    xla = compiled.cost_analysis()["flops"]
    ours = model_flops_per_pair(c)["total_forward"]
    by_hand = 2 * (16 * 16 * 9 * 3 * 128 + 8 * 8 * 9 * 128 * 256 + 64 * 256 * 256)  # the stem alone
    c.image.stem = "patch"
    assert ours - model_flops_per_pair(c)["total_forward"] == by_hand - 2 * 64 * 48 * 256
    # XLA leaves out the taps that fall on the zero padding at the border (0.3 % here); we count
    # every tap, as papers do.
    assert 0.99 <= xla / ours <= 1.03, (xla, ours)
