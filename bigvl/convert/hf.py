"""HF transformers CLIPModel / SiglipModel (config.json + model.safetensors, PyTorch names) ↔ bigvl.

CLIP: vision_model.embeddings.{class_embedding, patch_embedding (no bias), position_embedding},
pre_layrnorm, encoder.layers.i.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1/fc2},
post_layernorm (on the pooled cls token: the same per-token LayerNorm as bigvl's final one),
visual_projection.weight = proj.T; text_model.{embeddings, encoder, final_layer_norm},
text_projection; logit_scale (log). Text pooled at the first `eos_token_id` (argmax of the ids
when the config still says 2, transformers' legacy rule).
SigLIP: patch conv with bias, no cls / pre-LN, post_layernorm then the MAP head
(vision_model.head.{probe, attention.in_proj_weight/bias, out_proj, layernorm, mlp}); text
pooled at the last position with no padding mask, text_model.head (bias) to the joint space;
logit_scale and logit_bias.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from bigvl.convert import layout as L
from bigvl.convert.open_clip import CLIP_MEAN, CLIP_STD
from bigvl.models import image_size_of, text_size_of

ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}
KINDS = ("clip", "siglip", "siglip2")  # siglip2: Siglip2Model, the NaFlex variant (model.image.naflex)


# transformers' own defaults, per config class (`model_type`), for every key infer_config reads: a
# published config.json leaves many keys to them (google/siglip-base-patch16-224's text_config names
# only sizes and vocab_size), and SigLIP's differ from CLIP's (gelu_pytorch_tanh, 1e-6, 64 positions,
# patch 16). Read off the __init__ signatures of huggingface/transformers
# src/transformers/models/clip/configuration_clip.py @ 01841b341b64ab547cd2e30f09cb9c74929f50f2 and
# src/transformers/models/siglip/configuration_siglip.py @ d5ab4d58c4e44f1a6463fd4037fcdefb355ea468;
# vision_use_head (SiglipVisionConfig, later versions) defaults to True. Special token ids are not
# taken from here (see infer_config): SigLIP's 49406 / 49407 are CLIP leftovers outside its vocab.
HF_DEFAULTS: dict[str, dict] = {
    "clip": {"projection_dim": 512},
    "clip_text_model": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                        "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                        "layer_norm_eps": 1e-5},
    "clip_vision_model": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                          "num_attention_heads": 12, "image_size": 224, "patch_size": 32,
                          "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5},
    "siglip": {},
    "siglip_text_model": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                          "num_attention_heads": 12, "max_position_embeddings": 64,
                          "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6},
    "siglip_vision_model": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                            "num_attention_heads": 12, "image_size": 224, "patch_size": 16,
                            "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "vision_use_head": True},
}
# Siglip2Model's (transformers 5.25 models/siglip2/configuration_siglip2.py): SigLIP's, with num_patches
# (the learned position grid, 256 = 16×16) instead of image_size
HF_DEFAULTS.update({"siglip2": {}, "siglip2_text_model": dict(HF_DEFAULTS["siglip_text_model"]),
                    "siglip2_vision_model": {**{k: v for k, v in HF_DEFAULTS["siglip_vision_model"].items()
                                                if k != "image_size"}, "num_patches": 256}})


def kind_of(hf_config: dict) -> str:
    """'clip' or 'siglip' from config.json's model_type; ValueError for anything else."""
    kind = hf_config.get("model_type")
    if kind not in KINDS:
        raise ValueError(f"HF config.json: model_type {kind!r} is not one of {KINDS} (CLIPModel / SiglipModel)")
    return kind


def resolved(hf_config: dict) -> tuple[dict, dict, dict]:
    """(top level, vision_config, text_config) of an HF config.json, each key it leaves out filled in
    from its model type's transformers defaults (HF_DEFAULTS); ValueError naming an unknown or
    mismatched model_type."""
    kind = kind_of(hf_config)
    out = [{**HF_DEFAULTS[kind], **hf_config}]
    for sub, tower in (("vision_config", "vision"), ("text_config", "text")):
        cfg = hf_config.get(sub) or {}
        want = f"{kind}_{tower}_model"
        have = cfg.get("model_type", want)
        if have != want:
            raise ValueError(f"HF config.json: {sub}.model_type {have!r} in a {kind!r} model; expected {want!r}")
        out.append({**HF_DEFAULTS[want], **cfg})
    return out[0], out[1], out[2]


def _activation(cfg: dict, which: str) -> str:
    act = cfg["hidden_act"]
    if act not in ACTIVATIONS:
        raise ValueError(f"HF config.json: {which}.hidden_act {act!r} is not one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[act]


# HF image processors' `resample` (PIL's enum values) → bigvl's eval interpolation
HF_RESAMPLE = {2: "bilinear", 3: "bicubic"}


def image_preprocessing(siglip: bool, processor: dict) -> dict:
    """model.image resize / interpolation / pixel mean and std from an HF preprocessor_config.json
    ({} = the image processor's defaults: CLIP resizes the shorter side bicubic then centre-crops,
    SigLIP resizes the whole image bicubic; mean/std CLIP's or 0.5)."""
    resample = int(processor.get("resample", 3))
    if resample not in HF_RESAMPLE:
        raise ValueError(f"preprocessor_config.json: resample {resample} is not bilinear (2) or bicubic (3)")
    size = processor.get("size") or {}
    shorter = "shortest_edge" in size if size else not siglip
    crop = processor.get("do_center_crop", not siglip)
    if shorter != bool(crop):
        raise ValueError(f"preprocessor_config.json: size {size} with do_center_crop {crop} is neither CLIP's "
                         "(shortest_edge + centre crop) nor SigLIP's (height/width, no crop)")
    return {"resize": "shorter_side_hf" if shorter else "squash", "interpolation": HF_RESAMPLE[resample],
            "pixel_mean": tuple(processor.get("image_mean", (0.5,) * 3 if siglip else CLIP_MEAN)),
            "pixel_std": tuple(processor.get("image_std", (0.5,) * 3 if siglip else CLIP_STD))}


def infer_config(hf_config: dict, sd: Mapping[str, np.ndarray], processor: dict | None = None) -> dict:
    """The `config.model` overrides (nested dict) for an HF CLIPModel / SiglipModel."""
    kind = kind_of(hf_config)
    top, v, t = resolved(hf_config)
    acts = {_activation(v, "vision_config"), _activation(t, "text_config")}
    eps = {float(v["layer_norm_eps"]), float(t["layer_norm_eps"])}
    if len(acts) > 1 or len(eps) > 1:
        raise ValueError(f"HF config.json: the towers differ in hidden_act {sorted(acts)} or layer_norm_eps "
                         f"{sorted(eps)}; bigvl has one model.activation and model.layer_norm_eps")
    siglip, naflex = kind in ("siglip", "siglip2"), kind == "siglip2"
    vocab = int(sd["text_model.embeddings.token_embedding.weight"].shape[0])
    width, twidth = int(v["hidden_size"]), int(t["hidden_size"])
    eos = int(t.get("eos_token_id", 1 if siglip else 2))
    if siglip and not 0 <= eos < vocab:  # transformers' default 49407 is a CLIP leftover: T5's EOS is 1
        eos = 1
    if siglip:
        if not v["vision_use_head"]:
            raise ValueError("HF config.json: vision_config.vision_use_head false (no MAP head) is not supported")
        embed = int(sd["text_model.head.weight"].shape[0])
    else:
        embed = int(top["projection_dim"])
    model = {
        "image": {"variant": "custom", "image_size": int(v.get("image_size", 0)), "patch_size": int(v["patch_size"]),
                  "width": width, "depth": int(v["num_hidden_layers"]), "num_heads": int(v["num_attention_heads"]),
                  "mlp_dim": int(v["intermediate_size"]), "pool": "map" if siglip else "cls",
                  "patch_bias": siglip, "ln_pre": not siglip, "proj": not siglip, "proj_bias": False,
                  **image_preprocessing(siglip, processor or {})},
        "text": {"variant": "custom", "vocab_size": vocab, "context_length": int(t["max_position_embeddings"]),
                 "width": twidth, "depth": int(t["num_hidden_layers"]), "num_heads": int(t["num_attention_heads"]),
                 "mlp_dim": int(t["intermediate_size"]), "causal": not siglip, "pool": "last" if siglip else "eos",
                 # transformers' legacy CLIP configs (eos_token_id 2) pool at the argmax id: the EOT, CLIP's highest
                 "eos_id": vocab - 1 if eos == 2 and not siglip else eos,
                 "bos_id": vocab - 2 if eos == 2 and not siglip else int(t.get("bos_token_id", vocab - 2)),
                 "pad_id": int(t.get("pad_token_id", 1)) if siglip else 0,
                 "proj": True, "proj_bias": siglip, "mask_pads": False, "normalize": "siglip" if siglip else ""},
        "embed_dim": embed,
        "activation": acts.pop(),
        "layer_norm_eps": eps.pop(),
        "temperature_init": float(min(math.exp(float(np.asarray(sd["logit_scale"]).reshape(-1)[0])), 100.0)),
    }
    if naflex:
        model["image"].update(naflex_image_config(v, processor or {}))
    if siglip:  # SigLIP trains its scale uncapped (it may exceed CLIP's 100)
        model["bias_init"] = float(np.asarray(sd["logit_bias"]).reshape(-1)[0])
        model["max_logit_scale"] = 0.0
        model["temperature_init"] = float(math.exp(float(np.asarray(sd["logit_scale"]).reshape(-1)[0])))
        model["image"]["proj"] = False
        if width != embed:
            raise ValueError(f"HF SigLIP: vision hidden_size {width} differs from the text head's {embed}")
    return model


def naflex_image_config(vision: dict, processor: dict) -> dict:
    """model.image keys of a Siglip2Model (NaFlex): its num_patches position embeddings are a G×G grid
    (image_size = G·patch), the processor's max_num_patches the default length, transformers' grid rule."""
    grid, patch = math.isqrt(int(vision["num_patches"])), int(vision["patch_size"])
    if grid * grid != int(vision["num_patches"]):
        raise ValueError(f"HF config.json: vision_config.num_patches {vision['num_patches']} is not a square grid")
    resample = int(processor.get("resample", 2))
    if resample not in HF_RESAMPLE:
        raise ValueError(f"preprocessor_config.json: resample {resample} is not bilinear (2) or bicubic (3)")
    if int(processor.get("patch_size", patch)) != patch:
        raise ValueError(f"preprocessor_config.json: patch_size {processor['patch_size']} differs from the model's {patch}")
    return {"image_size": grid * patch, "naflex": True, "naflex_grid": "siglip2", "resize": "squash",
            "max_patches": int(processor.get("max_num_patches", grid * grid)), "interpolation": HF_RESAMPLE[resample],
            "pixel_mean": tuple(processor.get("image_mean", (0.5,) * 3)),
            "pixel_std": tuple(processor.get("image_std", (0.5,) * 3))}


def _block(bprefix: str, kprefix: str, width: int, heads: int) -> list[L.Entry]:
    k, a = width // heads, f"{kprefix}.self_attn"
    qkv = [f"{a}.{n}_proj" for n in "qkv"]
    return [
        *L.layer_norm(f"{bprefix}/ln_1", f"{kprefix}.layer_norm1"),
        L.fused_rows(f"{bprefix}/attn/qkv/kernel", [f"{n}.weight" for n in qkv], (width, 3, heads, k), True),
        L.fused_rows(f"{bprefix}/attn/qkv/bias", [f"{n}.bias" for n in qkv], (3, heads, k), False),
        *L.linear_layer(f"{bprefix}/attn/out", f"{a}.out_proj", kernel_shape=(heads, k, width), in_dims=2),
        *L.layer_norm(f"{bprefix}/ln_2", f"{kprefix}.layer_norm2"),
        *L.linear_layer(f"{bprefix}/mlp/fc1", f"{kprefix}.mlp.fc1"),
        *L.linear_layer(f"{bprefix}/mlp/fc2", f"{kprefix}.mlp.fc2"),
    ]


def _map_head(width: int, heads: int) -> list[L.Entry]:
    k, h = width // heads, "vision_model.head"
    return [
        L.copy("image/map_head/probe", f"{h}.probe", (1, width), (1, 1, width)),
        L.split_rows(("image/map_head/q/kernel", "image/map_head/kv/kernel"), f"{h}.attention.in_proj_weight",
                     ((width, heads, k), (width, 2, heads, k)), (width, 2 * width), True),
        L.split_rows(("image/map_head/q/bias", "image/map_head/kv/bias"), f"{h}.attention.in_proj_bias",
                     ((heads, k), (2, heads, k)), (width, 2 * width), False),
        *L.linear_layer("image/map_head/out", f"{h}.attention.out_proj", kernel_shape=(heads, k, width), in_dims=2),
        *L.layer_norm("image/map_head/ln", f"{h}.layernorm"),
        *L.linear_layer("image/map_head/mlp/fc1", f"{h}.mlp.fc1"),
        *L.linear_layer("image/map_head/mlp/fc2", f"{h}.mlp.fc2"),
    ]


def table(model_cfg) -> list[L.Entry]:
    """The HF ↔ bigvl entries of a two-tower `config.model`: CLIPModel for image pool 'cls',
    SiglipModel for 'map' (ValueError naming the key otherwise)."""
    ic, tc = model_cfg.image, model_cfg.text
    isz, tsz = image_size_of(ic), text_size_of(tc)
    siglip = ic.pool == "map"
    if ic.get("stem", "patch") != "patch":
        raise ValueError(f"model.image.stem = {ic.stem!r} has no HF equivalent: its ViT embeds patches "
                         "with one linear map (a run with model.image.stem = 'patch' exports)")
    if ic.get("naflex") and not siglip:
        raise ValueError(f"model.image.naflex with model.image.pool = {ic.pool!r}: the HF NaFlex model (Siglip2Model) "
                         "pools with a MAP head ('map')")
    if ic.pool == "gap":
        raise ValueError("model.image.pool = 'gap' has no HF equivalent: CLIPModel pools the class token and "
                         "SiglipModel a MAP head (a run with model.image.pool = 'cls' exports)")
    want = ({"image.patch_bias": True, "image.ln_pre": False, "image.proj": False, "text.proj_bias": True,
             "text.pool": "last", "text.causal": False, "text.mask_pads": False} if siglip else
            {"image.patch_bias": False, "image.ln_pre": True, "image.proj_bias": False, "text.proj_bias": False,
             "text.pool": "eos", "image.pool": "cls", "text.causal": True})
    for key, value in want.items():
        have = model_cfg.get(key.split(".")[0]).get(key.split(".")[1])
        if have != value:
            raise ValueError(f"model.{key} = {have!r}: an HF {'SiglipModel' if siglip else 'CLIPModel'} "
                             f"needs {value!r}")
    v, t = "vision_model", "text_model"
    out = [
        # NaFlex (Siglip2Model): a Linear on patches flattened (py, px, c), as bigvl's Dense reads them
        L.linear("image/patch_embedding/kernel", f"{v}.embeddings.patch_embedding.weight") if ic.get("naflex") else
        L.conv_patch("image/patch_embedding/kernel", f"{v}.embeddings.patch_embedding.weight", isz.patch_size, 3,
                     isz.width, True),
        L.copy("image/pos_embedding", f"{v}.embeddings.position_embedding.weight"),
        *L.layer_norm("image/encoder/ln_final", f"{v}.post_layernorm"),
        L.copy("text/token_embedding", f"{t}.embeddings.token_embedding.weight"),
        L.copy("text/pos_embedding", f"{t}.embeddings.position_embedding.weight"),
        *L.layer_norm("text/encoder/ln_final", f"{t}.final_layer_norm"),
    ]
    if siglip:
        out += [L.copy("image/patch_embedding/bias", f"{v}.embeddings.patch_embedding.bias"),
                *_map_head(isz.width, isz.num_heads), *L.linear_layer("text_proj", f"{t}.head"),
                L.copy("log_logit_scale", "logit_scale", (), (1,)), L.copy("logit_bias", "logit_bias", (), (1,))]
    else:
        out += [L.copy("image/cls_token", f"{v}.embeddings.class_embedding"),
                *L.layer_norm("image/ln_pre", f"{v}.pre_layrnorm"),
                L.linear("image_proj/kernel", "visual_projection.weight"),
                L.linear("text_proj/kernel", "text_projection.weight"),
                L.copy("log_logit_scale", "logit_scale", (), ())]
    for i in range(isz.depth):
        out += _block(f"image/encoder/block_{i}", f"{v}.encoder.layers.{i}", isz.width, isz.num_heads)
    for i in range(tsz.depth):
        out += _block(f"text/encoder/block_{i}", f"{t}.encoder.layers.{i}", tsz.width, tsz.num_heads)
    return out


def ignored(key: str) -> bool:
    """Non-parameter buffers older transformers saved."""
    return key.endswith("position_ids")


def hf_config(model_cfg) -> dict:
    """The config.json transformers needs to load an export of this two-tower `config.model`."""
    ic, tc = model_cfg.image, model_cfg.text
    isz, tsz = image_size_of(ic), text_size_of(tc)
    siglip = ic.pool == "map"
    act = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}[model_cfg.activation]
    common = dict(hidden_act=act, layer_norm_eps=float(model_cfg.layer_norm_eps), attention_dropout=0.0)
    vision = dict(hidden_size=isz.width, intermediate_size=isz.mlp_dim, num_hidden_layers=isz.depth,
                  num_attention_heads=isz.num_heads, image_size=ic.image_size, patch_size=isz.patch_size,
                  num_channels=3, **common)
    text = dict(hidden_size=tsz.width, intermediate_size=tsz.mlp_dim, num_hidden_layers=tsz.depth,
                num_attention_heads=tsz.num_heads, vocab_size=tc.vocab_size, max_position_embeddings=tc.context_length,
                bos_token_id=tc.bos_id, eos_token_id=tc.eos_id, pad_token_id=tc.pad_id, **common)
    if siglip and ic.get("naflex"):
        del vision["image_size"]
        return {"architectures": ["Siglip2Model"], "model_type": "siglip2",
                "vision_config": dict(vision, model_type="siglip2_vision_model", vision_use_head=True,
                                      num_patches=(ic.image_size // isz.patch_size) ** 2),
                "text_config": dict(text, model_type="siglip2_text_model", projection_size=model_cfg.embed_dim)}
    if siglip:
        return {"architectures": ["SiglipModel"], "model_type": "siglip",
                "vision_config": dict(vision, model_type="siglip_vision_model", vision_use_head=True),
                "text_config": dict(text, model_type="siglip_text_model", projection_size=model_cfg.embed_dim)}
    return {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": model_cfg.embed_dim,
            "logit_scale_init_value": math.log(model_cfg.temperature_init),
            "vision_config": dict(vision, model_type="clip_vision_model", projection_dim=model_cfg.embed_dim),
            "text_config": dict(text, model_type="clip_text_model", projection_dim=model_cfg.embed_dim)}
