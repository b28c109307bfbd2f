"""open_clip / OpenAI CLIP state dicts ↔ bigvl: the key table and the config they imply.

open_clip's names (visual.conv1.weight without bias, visual.class_embedding,
visual.positional_embedding, visual.ln_pre, visual.transformer.resblocks.i.{ln_1,
attn.in_proj_weight [3D, D], attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj},
visual.ln_post, visual.proj [D, E] used as x @ proj; the text tower at the root: token_embedding,
positional_embedding, transformer.resblocks.*, ln_final, text_projection [W, E] (or an nn.Linear
with a bias), logit_scale (log)).

A state dict does not record the heads, the activation or the text pooling: they come from
open_clip's model JSON (`--model-config`, e.g. open_clip/model_configs/ViT-B-16.json, with
`quick_gelu: true` for OpenAI's weights), else heads = width / 64 and the activation must be
given (`--set model.activation=quick_gelu`). OpenAI's own state dicts (its TorchScript archives'
weights) carry `input_resolution`, `context_length` and `vocab_size` entries: such a dict given without a
model JSON is taken as QuickGELU, and a model JSON that sets no `quick_gelu` (open_clip's `ViT-B-16.json`,
not `ViT-B-16-quickgelu.json`) gets a one-line warning (`activation_note`).
"""
from __future__ import annotations

import math
import re
from typing import Mapping

import numpy as np

from bigvl.convert import layout as L
from bigvl.data.image_ops import INTERPOLATIONS
from bigvl.models import image_size_of, text_size_of

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# open_clip's preprocess_cfg resize_mode → model.image.resize ('longest' pads: no bigvl rule, refused)
RESIZE_MODES = {"shortest": "shorter_side", "squash": "squash"}
TEXT_POOLS = {"argmax": "eos", "eos": "eos", "last": "last", "first": "first"}
IGNORED = ("attn_mask",)  # buffers some open_clip versions save
OPENAI_KEYS = ("input_resolution", "context_length", "vocab_size")  # OpenAI's CLIP state dicts only
QUICK_GELU_HOW = ("--set model.activation=quick_gelu, or open_clip's -quickgelu model JSON "
                  "(e.g. ViT-B-16-quickgelu.json)")


def _layers(sd: Mapping, prefix: str) -> int:
    found = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if sorted(found) != list(range(len(found))) or not found:
        raise ValueError(f"open_clip state dict: resblocks under {prefix!r} are {sorted(found)}, not 0..L-1")
    return len(found)


def infer_config(sd: Mapping[str, np.ndarray], model_json: dict | None) -> dict:
    """The `config.model` overrides (nested dict) that make bigvl compute what this state dict computed.

    model_json: open_clip's model config ({embed_dim, quick_gelu, vision_cfg, text_cfg}, or the hub's
    open_clip_config.json {model_cfg, preprocess_cfg}) or None.
    Raises ValueError naming what the state dict or model JSON holds that bigvl cannot express.
    """
    preprocess = (model_json or {}).get("preprocess_cfg", {})
    if model_json is not None and "model_cfg" in model_json:
        model_json = model_json["model_cfg"]
    if "visual.conv1.weight" not in sd:
        keys = [k for k in sd if k.startswith("visual.")][:3]
        raise ValueError(f"not an open_clip ViT CLIP state dict: no 'visual.conv1.weight' (visual keys: {keys}; "
                         "timm towers 'visual.trunk.*' are not supported)")
    mj = model_json or {}
    vcfg, tcfg = mj.get("vision_cfg", {}), mj.get("text_cfg", {})
    for key, ok in (("vision_cfg.attentional_pool", not vcfg.get("attentional_pool")),
                    ("vision_cfg.pool_type", vcfg.get("pool_type", "tok") == "tok"),
                    ("text_cfg.embed_cls", not tcfg.get("embed_cls")),
                    ("text_cfg.pool_type", tcfg.get("pool_type", "argmax") in TEXT_POOLS),
                    ("vision_cfg.pos_embed_type", vcfg.get("pos_embed_type", "learnable") == "learnable")):
        if not ok:
            name = key.split(".")[1]
            raise ValueError(f"open_clip model config: {key} = {vcfg.get(name, tcfg.get(name))!r} has no bigvl "
                             "equivalent")
    if preprocess.get("resize_mode", "shortest") not in RESIZE_MODES or \
            preprocess.get("interpolation", "bicubic") not in INTERPOLATIONS:
        raise ValueError(f"open_clip preprocess_cfg: resize_mode {preprocess.get('resize_mode')!r} / interpolation "
                         f"{preprocess.get('interpolation')!r}: bigvl evaluates with resize_mode {tuple(RESIZE_MODES)} "
                         f"and interpolation {tuple(INTERPOLATIONS)}")
    activation, eps = _kwargs(mj, vcfg, tcfg)
    conv = sd["visual.conv1.weight"]
    width, patch = int(conv.shape[0]), int(conv.shape[2])
    grid = math.isqrt(int(sd["visual.positional_embedding"].shape[0]) - 1)
    twidth = int(sd["token_embedding.weight"].shape[1])
    vocab = int(sd["token_embedding.weight"].shape[0])
    causal = not tcfg.get("no_causal_mask", False)
    if "text_projection.weight" in sd:
        embed, text_bias = int(sd["text_projection.weight"].shape[0]), "text_projection.bias" in sd
    else:
        embed, text_bias = int(sd["text_projection"].shape[1]), False
    head_width = int(vcfg.get("head_width", 64))
    model = {
        "image": {"variant": "custom", "image_size": grid * patch, "patch_size": patch, "width": width,
                  "depth": _layers(sd, "visual.transformer.resblocks."), "num_heads": width // head_width,
                  "mlp_dim": int(sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]), "pool": "cls",
                  "patch_bias": False, "ln_pre": "visual.ln_pre.weight" in sd, "proj": "visual.proj" in sd,
                  "proj_bias": False,
                  "pixel_mean": tuple(preprocess.get("mean", vcfg.get("image_mean", CLIP_MEAN))),
                  "pixel_std": tuple(preprocess.get("std", vcfg.get("image_std", CLIP_STD))),
                  # open_clip's image_transform: torchvision Resize(shortest side) + CenterCrop, bicubic
                  "resize": RESIZE_MODES[preprocess.get("resize_mode", "shortest")],
                  "interpolation": preprocess.get("interpolation", "bicubic")},
        "text": {"variant": "custom", "vocab_size": vocab, "context_length": int(sd["positional_embedding"].shape[0]),
                 "width": twidth, "depth": _layers(sd, "transformer.resblocks."),
                 "num_heads": int(tcfg.get("heads", twidth // 64)),
                 "mlp_dim": int(sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]), "causal": causal,
                 "pool": TEXT_POOLS[tcfg.get("pool_type", "argmax")],
                 # argmax pooling = the EOT token, CLIP's highest id; SOT is the one below it.
                 "eos_id": int(tcfg.get("eos_id", vocab - 1)) if tcfg.get("pool_type") == "eos" else vocab - 1,
                 "bos_id": vocab - 2, "pad_id": int(tcfg.get("pad_id", 0)),
                 "proj": True, "proj_bias": text_bias, "mask_pads": False},
        "embed_dim": embed,
        "layer_norm_eps": eps,
        "temperature_init": float(min(math.exp(float(np.asarray(sd["logit_scale"]).reshape(()))), 100.0)),
    }
    if model_json is not None:
        model["activation"] = activation
    elif is_openai(sd):
        model["activation"] = "quick_gelu"
    return model


def is_openai(sd: Mapping) -> bool:
    """OpenAI's CLIP state dicts hold the int entries input_resolution / context_length / vocab_size."""
    return any(k in sd for k in OPENAI_KEYS)


def activation_note(sd: Mapping, model_json: dict | None, activation: str) -> str | None:
    """One line for stderr when the activation of an open_clip import was assumed (no `--set
    model.activation`): OpenAI weights taken as QuickGELU, or a model JSON silent on quick_gelu taken
    as exact GELU (the QuickGELU of OpenAI's weights would then be lost without a word)."""
    mj = (model_json or {}).get("model_cfg", model_json or {})
    if model_json is None:
        if is_openai(sd):
            return ("note: OpenAI CLIP weights (input_resolution / context_length / vocab_size entries): "
                    "assumed model.activation=quick_gelu (--set model.activation=... to change)")
        return None
    if "quick_gelu" in mj or activation != "gelu":
        return None
    if is_openai(sd):
        return ("warning: OpenAI CLIP weights (input_resolution / context_length / vocab_size entries) but the "
                "model JSON sets no quick_gelu: imported with exact GELU (model.activation=gelu), not the "
                f"QuickGELU OpenAI trained with; for QuickGELU: {QUICK_GELU_HOW}")
    return ("warning: the open_clip model JSON sets no quick_gelu: assumed exact GELU (model.activation=gelu); "
            f"OpenAI's weights (and open_clip's *-quickgelu models) need QuickGELU: {QUICK_GELU_HOW}")


def _kwargs(mj: dict, vcfg: dict, tcfg: dict) -> tuple[str, float]:
    """(activation, LayerNorm eps) from open_clip's quick_gelu and the towers' act_kwargs / norm_kwargs
    (nn.GELU(approximate='tanh'), LayerNorm(eps=...)); ValueError naming what bigvl cannot express."""
    found = {}
    for name, cfg in (("vision_cfg", vcfg), ("text_cfg", tcfg)):
        act, norm = dict(cfg.get("act_kwargs") or {}), dict(cfg.get("norm_kwargs") or {})
        if set(act) - {"approximate"} or act.get("approximate", "none") not in ("none", "tanh") or (
                act and mj.get("quick_gelu")):
            raise ValueError(f"open_clip model config: {name}.act_kwargs = {act} has no bigvl equivalent "
                             "(nn.GELU's approximate 'none' | 'tanh' only)")
        if set(norm) - {"eps"}:
            raise ValueError(f"open_clip model config: {name}.norm_kwargs = {norm} has no bigvl equivalent (eps only)")
        activation = ("quick_gelu" if mj.get("quick_gelu") else
                      "gelu_tanh" if act.get("approximate") == "tanh" else "gelu")
        found[name] = (activation, float(norm.get("eps", 1e-5)))
    if found["vision_cfg"] != found["text_cfg"]:
        raise ValueError(f"open_clip model config: the towers differ in activation / LayerNorm eps "
                         f"{found}; bigvl has one model.activation and model.layer_norm_eps")
    return found["vision_cfg"]


def _block(bprefix: str, kprefix: str, width: int, heads: int) -> list[L.Entry]:
    k = width // heads
    return [
        *L.layer_norm(f"{bprefix}/ln_1", f"{kprefix}.ln_1"),
        L.linear(f"{bprefix}/attn/qkv/kernel", f"{kprefix}.attn.in_proj_weight", (width, 3, heads, k)),
        L.copy(f"{bprefix}/attn/qkv/bias", f"{kprefix}.attn.in_proj_bias", (3, heads, k), (-1,)),
        L.linear(f"{bprefix}/attn/out/kernel", f"{kprefix}.attn.out_proj.weight", (heads, k, width), in_dims=2),
        L.copy(f"{bprefix}/attn/out/bias", f"{kprefix}.attn.out_proj.bias"),
        *L.layer_norm(f"{bprefix}/ln_2", f"{kprefix}.ln_2"),
        *L.linear_layer(f"{bprefix}/mlp/fc1", f"{kprefix}.mlp.c_fc"),
        *L.linear_layer(f"{bprefix}/mlp/fc2", f"{kprefix}.mlp.c_proj"),
    ]


def table(model_cfg) -> list[L.Entry]:
    """The open_clip ↔ bigvl entries of a two-tower `config.model` (cls pooling, no patch bias, no
    image projection bias)."""
    ic, tc = model_cfg.image, model_cfg.text
    isz, tsz = image_size_of(ic), text_size_of(tc)
    if ic.get("stem", "patch") != "patch":
        raise ValueError(f"model.image.stem = {ic.stem!r} has no open_clip equivalent: its ViT embeds patches "
                         "with one linear map (a run with model.image.stem = 'patch' exports)")
    if ic.pool != "cls":
        raise ValueError(f"model.image.pool = {ic.pool!r} has no open_clip equivalent: open_clip's ViT always "
                         "prepends a class token that every patch attends to (its 'avg' pool averages the "
                         "patches of that sequence); a run with model.image.pool = 'cls' exports")
    for key, ok in (("image.patch_bias", not ic.patch_bias),
                    ("image.proj_bias", not ic.proj_bias), ("text.proj", tc.proj), ("text.pool", tc.pool != "map")):
        if not ok:
            raise ValueError(f"model.{key} = {ic.get(key[6:]) if key.startswith('image') else tc.get(key[5:])!r} "
                             "has no open_clip CLIP equivalent")
    out = [
        L.conv_patch("image/patch_embedding/kernel", "visual.conv1.weight", isz.patch_size, 3, isz.width, True),
        L.copy("image/cls_token", "visual.class_embedding"),
        L.copy("image/pos_embedding", "visual.positional_embedding"),
        *L.layer_norm("image/encoder/ln_final", "visual.ln_post"),
        L.copy("text/token_embedding", "token_embedding.weight"),
        L.copy("text/pos_embedding", "positional_embedding"),
        *L.layer_norm("text/encoder/ln_final", "ln_final"),
        L.copy("log_logit_scale", "logit_scale", (), ()),
    ]
    if ic.ln_pre:
        out += L.layer_norm("image/ln_pre", "visual.ln_pre")
    if ic.proj:
        out.append(L.copy("image_proj/kernel", "visual.proj"))
    if tc.proj_bias:
        out += L.linear_layer("text_proj", "text_projection")
    else:
        out.append(L.copy("text_proj/kernel", "text_projection"))
    for i in range(isz.depth):
        out += _block(f"image/encoder/block_{i}", f"visual.transformer.resblocks.{i}", isz.width, isz.num_heads)
    for i in range(tsz.depth):
        out += _block(f"text/encoder/block_{i}", f"transformer.resblocks.{i}", tsz.width, tsz.num_heads)
    return out


def ignored(key: str) -> bool:
    """Keys an import may skip (non-parameter buffers)."""
    return key.endswith(IGNORED) or key in OPENAI_KEYS
