"""big_vision SigLIP `.npz` checkpoints → bigvl: the key table and the config they imply.

Keys ('/'-joined, with or without a leading 'params/'): img/embedding/{kernel [P,P,3,D], bias},
img/pos_embedding [1,N,D], img/Transformer/encoderblock_i/{LayerNorm_0,
MultiHeadDotProductAttention_0/{query,key,value [D,H,K], out [H,K,D]}, LayerNorm_1,
MlpBlock_0/Dense_0, Dense_1}, img/Transformer/encoder_norm, img/MAPHead_0/{probe [1,1,D],
MultiHeadDotProductAttention_0, LayerNorm_0, MlpBlock_0}, img/head (optional); txt/Embed_0/embedding,
txt/pos_embedding, txt/Encoder_0/encoderblock_i/..., txt/Encoder_0/encoder_norm, txt/head; t (log
scale) and b. The scanned layout (`encoderblock/...` with every leaf stacked [L, ...]) is read
too. big_vision's defaults: tanh GELU, LayerNorm eps 1e-6, pixels x/127.5 − 1, text pooled at the
last position with no padding mask.
"""
from __future__ import annotations

import math
import re
from typing import Mapping

import numpy as np

from bigvl.convert import layout as L
from bigvl.models import image_size_of, text_size_of

IMG_ENC, TXT_ENC = "img/Transformer", "txt/Encoder_0"


def normalize_keys(npz: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drops a leading 'params/' and unstacks scanned `encoderblock/...` leaves [L, ...] into
    `encoderblock_i/...` (host copies, values exact)."""
    out = {}
    for key, value in npz.items():
        key = key[len("params/"):] if key.startswith("params/") else key
        m = re.match(r"(.*)/encoderblock/(.*)", key)
        if m:
            for i in range(value.shape[0]):
                out[f"{m.group(1)}/encoderblock_{i}/{m.group(2)}"] = value[i]
        else:
            out[key] = value
    return out


def _depth(params: Mapping, prefix: str) -> int:
    found = {int(m.group(1)) for k in params if (m := re.match(re.escape(prefix) + r"/encoderblock_(\d+)/", k))}
    if not found or sorted(found) != list(range(len(found))):
        raise ValueError(f"big_vision npz: encoder blocks under {prefix!r} are {sorted(found)}, not 0..L-1")
    return len(found)


def infer_config(params: Mapping[str, np.ndarray]) -> dict:
    """The `config.model` overrides (nested dict) for a big_vision SigLIP checkpoint (keys normalised)."""
    for key in ("img/embedding/kernel", "txt/Embed_0/embedding", "t"):
        if key not in params:
            raise ValueError(f"not a big_vision SigLIP checkpoint: no {key!r} (keys: {sorted(params)[:4]}...)")
    patch, _, _, width = params["img/embedding/kernel"].shape
    n = params["img/pos_embedding"].shape[-2]
    vocab, twidth = params["txt/Embed_0/embedding"].shape
    query = params[f"{IMG_ENC}/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel"]
    tquery = params[f"{TXT_ENC}/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel"]
    has_map = "img/MAPHead_0/probe" in params
    if not has_map:
        raise ValueError("big_vision npz: no img/MAPHead_0 (only MAP-pooled SigLIP image towers are supported)")
    img_head = "img/head/kernel" in params
    embed = int(params["txt/head/kernel"].shape[1]) if "txt/head/kernel" in params else int(twidth)
    model = {
        "image": {"variant": "custom", "image_size": int(math.isqrt(n) * patch), "patch_size": int(patch),
                  "width": int(width), "depth": _depth(params, IMG_ENC), "num_heads": int(query.shape[1]),
                  "mlp_dim": int(params[f"{IMG_ENC}/encoderblock_0/MlpBlock_0/Dense_0/kernel"].shape[1]),
                  "pool": "map", "patch_bias": True, "ln_pre": False, "proj": img_head, "proj_bias": img_head,
                  "pixel_mean": (0.5,) * 3, "pixel_std": (0.5,) * 3,
                  "resize": "squash", "interpolation": "bilinear"},  # big_vision's pp: resize(size), bilinear
        "text": {"variant": "custom", "vocab_size": int(vocab),
                 "context_length": int(params["txt/pos_embedding"].shape[-2]),
                 "width": int(twidth), "depth": _depth(params, TXT_ENC), "num_heads": int(tquery.shape[1]),
                 "mlp_dim": int(params[f"{TXT_ENC}/encoderblock_0/MlpBlock_0/Dense_0/kernel"].shape[1]),
                 "causal": False, "pool": "last", "mask_pads": False, "normalize": "siglip", "proj": "txt/head/kernel" in params,
                 "proj_bias": "txt/head/bias" in params, "eos_id": 1, "pad_id": 1, "bos_id": 2},
        "embed_dim": embed,
        "activation": "gelu_tanh",
        "layer_norm_eps": 1e-6,
        "temperature_init": float(math.exp(float(np.asarray(params["t"]).reshape(-1)[0]))),
        "max_logit_scale": 0.0,  # big_vision trains SigLIP's scale uncapped (it may exceed CLIP's 100)
    }
    if "b" in params:
        model["bias_init"] = float(np.asarray(params["b"]).reshape(-1)[0])
    return model


def _attention(bprefix: str, kprefix: str, width: int, heads: int, map_head: bool) -> list[L.Entry]:
    k = width // heads
    a = f"{kprefix}/MultiHeadDotProductAttention_{0}"
    names = [f"{a}/{n}" for n in ("query", "key", "value")]
    if map_head:
        qkv = [L.copy(f"{bprefix}/q/kernel", f"{a}/query/kernel"), L.copy(f"{bprefix}/q/bias", f"{a}/query/bias"),
               L.stacked(f"{bprefix}/kv/kernel", [f"{n}/kernel" for n in names[1:]], (width, 2, heads, k),
                         (width, heads, k)),
               L.stacked(f"{bprefix}/kv/bias", [f"{n}/bias" for n in names[1:]], (2, heads, k), (heads, k))]
    else:
        qkv = [L.stacked(f"{bprefix}/qkv/kernel", [f"{n}/kernel" for n in names], (width, 3, heads, k),
                         (width, heads, k)),
               L.stacked(f"{bprefix}/qkv/bias", [f"{n}/bias" for n in names], (3, heads, k), (heads, k))]
    return qkv + [L.copy(f"{bprefix}/out/kernel", f"{a}/out/kernel"), L.copy(f"{bprefix}/out/bias", f"{a}/out/bias")]


def _dense(bprefix: str, kprefix: str) -> list[L.Entry]:
    return [L.copy(f"{bprefix}/kernel", f"{kprefix}/kernel"), L.copy(f"{bprefix}/bias", f"{kprefix}/bias")]


def _ln(bprefix: str, kprefix: str) -> list[L.Entry]:
    return L.layer_norm(bprefix, kprefix, scale="scale", bias="bias", sep="/")


def _block(bprefix: str, kprefix: str, width: int, heads: int) -> list[L.Entry]:
    return [*_ln(f"{bprefix}/ln_1", f"{kprefix}/LayerNorm_0"),
            *_attention(f"{bprefix}/attn", kprefix, width, heads, False),
            *_ln(f"{bprefix}/ln_2", f"{kprefix}/LayerNorm_1"),
            *_dense(f"{bprefix}/mlp/fc1", f"{kprefix}/MlpBlock_0/Dense_0"),
            *_dense(f"{bprefix}/mlp/fc2", f"{kprefix}/MlpBlock_0/Dense_1")]


def table(model_cfg) -> list[L.Entry]:
    """The big_vision ↔ bigvl entries of a SigLIP-shaped two-tower `config.model` (unscanned key names)."""
    ic, tc = model_cfg.image, model_cfg.text
    isz, tsz = image_size_of(ic), text_size_of(tc)
    n = (ic.image_size // isz.patch_size) ** 2
    out = [
        L.copy("image/patch_embedding/kernel", "img/embedding/kernel", (isz.patch_size ** 2 * 3, isz.width),
               (isz.patch_size, isz.patch_size, 3, isz.width)),
        L.copy("image/patch_embedding/bias", "img/embedding/bias"),
        L.copy("image/pos_embedding", "img/pos_embedding", (n, isz.width), (1, n, isz.width)),
        *_ln("image/encoder/ln_final", f"{IMG_ENC}/encoder_norm"),
        L.copy("image/map_head/probe", "img/MAPHead_0/probe", (1, isz.width), (1, 1, isz.width)),
        *_attention("image/map_head", "img/MAPHead_0", isz.width, isz.num_heads, True),
        *_ln("image/map_head/ln", "img/MAPHead_0/LayerNorm_0"),
        *_dense("image/map_head/mlp/fc1", "img/MAPHead_0/MlpBlock_0/Dense_0"),
        *_dense("image/map_head/mlp/fc2", "img/MAPHead_0/MlpBlock_0/Dense_1"),
        L.copy("text/token_embedding", "txt/Embed_0/embedding"),
        L.copy("text/pos_embedding", "txt/pos_embedding", (tc.context_length, tsz.width),
               (1, tc.context_length, tsz.width)),
        *_ln("text/encoder/ln_final", f"{TXT_ENC}/encoder_norm"),
        L.copy("log_logit_scale", "t", (), (1,)),
    ]
    if model_cfg.bias_init is not None:
        out.append(L.copy("logit_bias", "b", (), (1,)))
    if ic.proj:
        out += _dense("image_proj", "img/head") if ic.proj_bias else [L.copy("image_proj/kernel", "img/head/kernel")]
    if tc.proj:
        out += _dense("text_proj", "txt/head") if tc.proj_bias else [L.copy("text_proj/kernel", "txt/head/kernel")]
    for i in range(isz.depth):
        out += _block(f"image/encoder/block_{i}", f"{IMG_ENC}/encoderblock_{i}", isz.width, isz.num_heads)
    for i in range(tsz.depth):
        out += _block(f"text/encoder/block_{i}", f"{TXT_ENC}/encoderblock_{i}", tsz.width, tsz.num_heads)
    return out
