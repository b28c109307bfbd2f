"""`config.model` → an unbound model: the section's defaults, its checks, and building the model.

    model = build_model(config.model)                 # TwoTower, CoCa or CLIPS by model.kind
    images, tokens = dummy_inputs(config.model)       # zeros for init and shape inference
"""
from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from bigvl.models.captioners import KINDS, build_captioner
from bigvl.models.flair_pooling import FlairTwoTower
from bigvl.models.locca import LoccaTwoTower, build_locca_decoder, locca_config_defaults, locca_enabled
from bigvl.models.lora import LoraModel, LoraSpec, lora_config_defaults, lora_enabled
from bigvl.models.naflex import NaflexImages, dummy_naflex_images
from bigvl.models.options import ModelOptions, config_choice
from bigvl.models.rope import rope_from_config
from bigvl.models.sizes import TransformerSize, resolve_size
from bigvl.models.text import POOLS as TEXT_POOLS
from bigvl.models.text import TextTower
from bigvl.models.transformer import ACTIVATIONS
from bigvl.models.two_tower import TwoTower
from bigvl.models.vit import POOLS as IMAGE_POOLS
from bigvl.models.vit import STEMS, VisionTower


def model_config_defaults() -> ml_collections.ConfigDict:
    """Every `config.model` key with its default (open_clip ViT-B/16-style image tower).

    Size keys set to 0 come from `variant` ("B/16", "So400m/14", "L", ...); non-zero values
    override it; variant "custom" needs them all.
    """
    image = ml_collections.ConfigDict({
        "variant": "B/16",
        "image_size": 224,
        "patch_size": 0,
        "width": 0, "depth": 0, "num_heads": 0, "mlp_dim": 0,
        "pool": "cls",  # cls | gap | map
        # Evaluation input (bigvl/data/image_ops.py eval_resize): how any image becomes the square the
        # model reads, as its source library did it. crop_square (bigvl) | shorter_side (open_clip) |
        # shorter_side_hf (HF CLIP) | squash (SigLIP); bilinear | bicubic. Imports set both; training
        # crops are bigvl's own.
        "resize": "crop_square",
        "interpolation": "bilinear",
        "stem": "patch",  # patch (ViT) | conv (stride-2 3×3 convolutions down to the patch grid, bigvl/models/vit.py)
        "patch_bias": False,  # open_clip conv1 has none; big_vision's patch conv has one
        "ln_pre": True,  # LayerNorm before the encoder (open_clip), not in big_vision
        "proj": True,  # linear projection to embed_dim (False: width must equal embed_dim)
        "proj_bias": False,  # open_clip: no bias; big_vision heads: bias
        # uint8 pixels → (x/255 − mean)/std per channel; 0.5/0.5 is x/127.5 − 1 (big_vision, SigLIP);
        # CLIP: mean (0.48145466, 0.4578275, 0.40821073), std (0.26862954, 0.26130258, 0.27577711)
        "pixel_mean": (0.5, 0.5, 0.5),
        "pixel_std": (0.5, 0.5, 0.5),
        # NaFlex (SigLIP 2; bigvl/models/naflex.py, docs/guides/naflex.md): images at their aspect ratio as at
        # most max_patches patches (0 = (image_size / patch)²), the (image_size / patch)² position grid resized
        # per image; naflex_grid: closest_aspect (bigvl) | siglip2 (transformers' rule, imported checkpoints).
        "naflex": False,
        "naflex_grid": "closest_aspect",
        "max_patches": 0,
    })
    text = ml_collections.ConfigDict({
        "variant": "B",
        "vocab_size": 49408,
        "context_length": 77,
        "width": 0, "depth": 0, "num_heads": 0, "mlp_dim": 0,
        "causal": True,  # CLIP: causal; SigLIP: bidirectional with a padding mask
        "pool": "eos",  # eos | last | first | map | final (position T−1 whatever it holds: HF SigLIP)
        # Special token ids, their one home in the model (our sentencepiece: pad 0, unk 1, bos 2, eos 3);
        # they must equal the tokenizer's. bos_id: the captioners' decoder start token.
        "eos_id": 3,
        "pad_id": 0,
        "bos_id": 2,
        "proj": True,
        "proj_bias": False,
        "mask_pads": True,  # False: pads are unmasked tokens and 'last' is position T−1 (SigLIP as published)
        # Positions of the text tower and the captioners' decoder (bigvl/models/rope.py): learned (an absolute
        # table, every import) | rope (TULIP: rotary, base rope_base; rope_train_length > 0 below the
        # context interpolates positions by rope_train_length / context_length).
        "pos_emb": "learned",
        "rope_base": 10000.0,
        "rope_train_length": 0,
        # How text is normalised before tokenizing (bigvl/data/tokenizer.py `normalize_text`): "" = as
        # given; "siglip" = lower case, punctuation removed, whitespace collapsed (SigLIP's evaluations).
        "normalize": "",
    })
    # Captioners (model.kind coca | clips): the multimodal decoder; 0 = the text tower's value.
    decoder = ml_collections.ConfigDict({
        "depth": 0, "width": 0, "num_heads": 0, "mlp_dim": 0,
        "context_length": 77,  # decoder positions: caption target length and max decode length
        "num_queries": 256,  # CoCa: attentional-pooler queries feeding the decoder
        "pooler_heads": 0,  # CoCa: attentional-pooler heads (0 = the image tower's)
        "cond_slot": 1,  # CLIPS: which text of the T per image conditions the captioner (partial: alt)
        # CoCa, classifier-free guidance: fraction of captions trained with the image dropped (bigvl/models/guidance.py)
        "image_drop": 0.0,
        # SyCoCa (CoCa + text-guided masked image modelling, bigvl/models/sycoca.py): fraction of patches masked,
        # those the caption attends to least; 0 = plain CoCa. Its term: loss.mim_weight.
        "mim_mask_ratio": 0.0,
    })
    return ml_collections.ConfigDict({
        "kind": "two_tower",  # two_tower (CLIP/SigLIP) | coca | clips (see bigvl/models/captioners.py)
        "image": image,
        "text": text,
        "decoder": decoder,
        "embed_dim": 512,
        "temperature_init": 1 / 0.07,  # logit scale at init (stored as its log); SigLIP: 10
        "bias_init": None,  # None: no logit bias (CLIP); SigLIP: -10.0
        "max_logit_scale": 100.0,  # the optimizer clamps log_logit_scale to ≤ log of this; 0 = no cap
        "dtype": "float32",  # compute dtype
        "param_dtype": "float32",
        "remat": "none",  # one of REMAT_POLICIES
        "attention_impl": "",  # '' (by backend: cuDNN flash on GPU for bf16/fp16, else XLA) | 'xla' | 'cudnn'
        # Image/text encoder blocks under nn.scan, params stacked [depth, ...] (compile time flat in depth);
        # False keeps the unrolled block_0..block_{L-1} params (bigvl.models.pretrained converts between them).
        "scan_layers": False,
        # Two-tower: the towers' last block computes only the pooled position (cls / eos pooling):
        # the same embeddings for ~1/depth less work. False: every position, as open_clip does.
        "pooled_last_block": True,
        # How the Dense layers' kernel gradients are computed (bigvl.models.matmul): 'auto' = 'transposed'
        # on the CPU (one row-major matmul XLA runs on YNNPACK) unless remat saves dots, else 'xla'.
        "weight_grad_dot": "auto",
        # The towers' transformer (imported weights set what they were trained with, bigvl/convert):
        "activation": "gelu_tanh",  # gelu_tanh (big_vision, SigLIP) | gelu (exact erf) | quick_gelu (OpenAI CLIP)
        "layer_norm_eps": 1e-6,  # big_vision 1e-6; open_clip / HF CLIP 1e-5
        # FLAIR (two_tower): heads of the text-conditioned attention pooling (bigvl/models/flair_pooling.py;
        # 0 = off; loss.multi_text 'flair'), and how many texts it pools at a time (memory: B · chunk · patches).
        "flair_pool_heads": 0,
        "flair_pool_chunk": 256,
        "lora": lora_config_defaults(),  # LoRA adapters (rank 0 = off): bigvl/models/lora.py
        # SigLIP 2's LocCa decoder on the image tokens (two_tower; depth 0 = off): bigvl/models/locca.py
        "locca": locca_config_defaults(),
    })


def image_size_of(image_cfg) -> TransformerSize:
    """The image tower's width/depth/mlp_dim/num_heads/patch_size from `model.image`."""
    size = resolve_size(image_cfg.variant, width=image_cfg.width, depth=image_cfg.depth,
                        mlp_dim=image_cfg.mlp_dim, num_heads=image_cfg.num_heads,
                        patch_size=image_cfg.patch_size, what="model.image")
    if size.patch_size <= 0:
        raise ValueError(f"model.image: no patch size (variant {image_cfg.variant!r}, patch_size 0)")
    if image_cfg.image_size % size.patch_size:
        raise ValueError(f"model.image: image_size {image_cfg.image_size} not divisible by patch {size.patch_size}")
    return size


def text_size_of(text_cfg) -> TransformerSize:
    """The text tower's width/depth/mlp_dim/num_heads from `model.text`."""
    return resolve_size(text_cfg.variant, width=text_cfg.width, depth=text_cfg.depth, mlp_dim=text_cfg.mlp_dim,
                        num_heads=text_cfg.num_heads, what="model.text")


def build_model(model_cfg) -> nn.Module:
    """`config.model` → TwoTower, CoCa or CLIPS by `model.kind` (unbound); with `model.lora.rank` > 0
    wrapped in a `LoraModel` (the same init / apply, adapters added).

    Raises ValueError naming the key for bad values.
    """
    if lora_enabled(model_cfg):
        return LoraModel(_build_base_model(model_cfg), LoraSpec.from_config(model_cfg))
    return _build_base_model(model_cfg)


def _build_base_model(model_cfg) -> nn.Module:
    options = ModelOptions.from_config(model_cfg)
    ic, tc = model_cfg.image, model_cfg.text
    isz, tsz = image_size_of(ic), text_size_of(tc)
    # `get`: configs saved before these keys existed.
    arch = dict(activation=config_choice(model_cfg.get("activation", "gelu_tanh"), ACTIVATIONS, "activation"),
                ln_eps=float(model_cfg.get("layer_norm_eps", 1e-6)))
    if not arch["ln_eps"] > 0:
        raise ValueError(f"config key 'model.layer_norm_eps' must be > 0, got {arch['ln_eps']}")
    pixels = {}
    for key in ("pixel_mean", "pixel_std"):
        value = tuple(float(v) for v in ic.get(key, (0.5, 0.5, 0.5)))
        if len(value) != 3 or (key == "pixel_std" and min(value) <= 0):
            raise ValueError(f"config key 'model.image.{key}' must be 3 numbers (std > 0), got {value}")
        pixels[key] = value
    image = VisionTower(width=isz.width, depth=isz.depth, num_heads=isz.num_heads, mlp_dim=isz.mlp_dim,
                        patch_size=isz.patch_size, pool=config_choice(ic.pool, IMAGE_POOLS, "image.pool"),
                        stem=config_choice(ic.get("stem", "patch"), STEMS, "image.stem"),
                        patch_bias=ic.patch_bias, ln_pre=ic.ln_pre, **arch, **pixels, options=options,
                        naflex_positions=naflex_positions(model_cfg))
    text = TextTower(vocab_size=tc.vocab_size, context_length=tc.context_length, width=tsz.width,
                     depth=tsz.depth, num_heads=tsz.num_heads, mlp_dim=tsz.mlp_dim, causal=tc.causal,
                     pool=config_choice(tc.pool, TEXT_POOLS, "text.pool"), eos_id=tc.eos_id, pad_id=tc.pad_id,
                     mask_pads=config_choice(tc.get("mask_pads", True), (True, False), "text.mask_pads"),
                     rope=rope_from_config(tc), **arch, options=options)
    for name, cfg, size in (("image", ic, isz), ("text", tc, tsz)):
        if not cfg.proj and size.width != model_cfg.embed_dim:
            raise ValueError(f"model.{name}.proj is False, so its width {size.width} must equal "
                             f"model.embed_dim {model_cfg.embed_dim}")
    if not model_cfg.temperature_init > 0:
        raise ValueError(f"config key 'model.temperature_init' must be > 0, got {model_cfg.temperature_init}")
    if 0 < model_cfg.max_logit_scale < model_cfg.temperature_init:
        raise ValueError(f"config key 'model.temperature_init': {model_cfg.temperature_init} exceeds "
                         f"model.max_logit_scale {model_cfg.max_logit_scale}")
    if config_choice(model_cfg.get("kind", "two_tower"), KINDS, "kind") != "two_tower":
        return build_captioner(model_cfg, image, text, tsz, options)
    bias_init = model_cfg.bias_init
    if bias_init is not None and not math.isfinite(float(bias_init)):
        raise ValueError(f"config key 'model.bias_init' must be None or a finite float, got {bias_init}")
    flair = {"pool_heads": model_cfg.get("flair_pool_heads", 0), "pool_chunk": model_cfg.get("flair_pool_chunk", 256)}
    if flair["pool_heads"] and bias_init is None:
        raise ValueError("config key 'model.flair_pool_heads': FLAIR's sigmoid losses need a logit bias "
                         "(set model.bias_init, e.g. -10.0 with model.temperature_init 10.0)")
    tower = functools.partial(FlairTwoTower, **flair) if flair["pool_heads"] else TwoTower
    if locca_enabled(model_cfg):
        if flair["pool_heads"]:
            raise ValueError("config key 'model.locca.depth': the LocCa decoder sits on the plain two-tower "
                             "model, not FLAIR's (model.flair_pool_heads > 0)")
        tower = functools.partial(LoccaTwoTower, locca=build_locca_decoder(model_cfg, isz, options), pad_id=tc.pad_id)
    return tower(image=image, text=text, embed_dim=model_cfg.embed_dim, project_image=ic.proj,
                    project_text=tc.proj, image_proj_bias=ic.proj_bias, text_proj_bias=tc.proj_bias,
                    temperature_init=float(model_cfg.temperature_init),
                    bias_init=None if bias_init is None else float(bias_init), options=options)


def naflex_positions(model_cfg) -> int:
    """The side G = image_size / patch of a NaFlex model's learned position grid; 0 when model.image.naflex
    is off. Raises ValueError naming the key where NaFlex meets a model it does not serve."""
    ic = model_cfg.image
    if not config_choice(ic.get("naflex", False), (True, False), "image.naflex"):
        return 0
    config_choice(ic.get("naflex_grid", "closest_aspect"), ("closest_aspect", "siglip2"), "image.naflex_grid")
    if (model_cfg.get("kind", "two_tower") != "two_tower" or model_cfg.get("flair_pool_heads", 0)
            or locca_enabled(model_cfg)):
        raise ValueError("config key 'model.image.naflex': NaFlex serves the plain two-tower model "
                         "(model.kind 'two_tower', no FLAIR pooling, no LocCa decoder)")
    if ic.get("max_patches", 0) < 0:
        raise ValueError(f"config key 'model.image.max_patches' must be ≥ 0, got {ic.max_patches}")
    return ic.image_size // image_size_of(ic).patch_size


def naflex_length(model_cfg) -> int:
    """A NaFlex model's default patch budget L: model.image.max_patches, or G² when 0."""
    return model_cfg.image.get("max_patches", 0) or naflex_positions(model_cfg) ** 2


def dummy_inputs(model_cfg, batch: int = 1) -> tuple[jax.Array | NaflexImages, jax.Array]:
    """Zero images uint8 [b,S,S,3] (NaFlex: NaflexImages, L = `naflex_length`) and tokens int32 [b,L]
    for init and shape inference."""
    size, length = model_cfg.image.image_size, model_cfg.text.context_length
    if naflex_positions(model_cfg):
        images = dummy_naflex_images(batch, naflex_length(model_cfg), image_size_of(model_cfg.image).patch_size)
        return images, jnp.zeros((batch, length), jnp.int32)
    return jnp.zeros((batch, size, size, 3), jnp.uint8), jnp.zeros((batch, length), jnp.int32)
