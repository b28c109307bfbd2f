"""A bigvl two-tower workdir → an HF transformers directory or an open_clip state dict.

    export_workdir("workdirs/run", "hf", "out/hf_model")          # config.json + model.safetensors
    export_workdir("workdirs/run", "open_clip", "out/oc_model")   # open_clip_config.json + open_clip_model.safetensors

hf: a CLIPModel for image pool 'cls', a SiglipModel for 'map' (transformers loads it with
`from_pretrained`); open_clip: its hub / local-dir layout, {"model_cfg", "preprocess_cfg"} + the
state dict (`open_clip.create_model_and_transforms("local-dir:out/oc_model")`). The key tables
are the importers' (bigvl/convert/hf.py, open_clip.py), so
export → import gives back the same params bit for bit. A model these formats cannot express
(another pooling, a patch bias in open_clip, ...) fails naming the config key.

bigvl's own defaults go out too: tanh GELU is open_clip's `act_kwargs: {"approximate": "tanh"}` (nn.GELU)
and HF's `gelu_pytorch_tanh`; LayerNorm eps ≠ 1e-5 is open_clip's `norm_kwargs: {"eps": ...}` and HF's
`layer_norm_eps`; sentencepiece ids pool at the first `eos_id` (open_clip pool_type 'eos', HF
eos_token_id ≠ 2). Image pool 'gap' has no equivalent in either: open_clip's ViT always prepends a
class token that every patch attends to, HF's CLIP pools that token (model.image.pool = 'cls' exports).
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from bigvl.convert import hf, open_clip
from bigvl.convert.layout import from_bigvl, safetensors_numpy
from bigvl.convert.workdir import read_params
from bigvl.models import image_size_of, text_size_of

TARGETS = ("hf", "open_clip")
ACTIVATION_OK = {"hf": ("quick_gelu", "gelu", "gelu_tanh"), "open_clip": ("quick_gelu", "gelu", "gelu_tanh")}


def _save_safetensors(tensors: dict, path: str) -> None:
    safetensors_numpy().save_file(tensors, path)


OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS = "open_clip_config.json", "open_clip_model.safetensors"


def open_clip_mlp_ratio(width: int, mlp_dim: int, tower: str) -> float:
    """A float `mlp_ratio` with open_clip's `int(width * mlp_ratio) == mlp_dim` (mlp_dim / width can
    round down: 480 / 352 * 352 = 479.99...); ValueError naming the pair when there is none."""
    ratio = mlp_dim / width
    for candidate in (ratio, float(np.nextafter(ratio, np.inf)), (mlp_dim + 0.5) / width):
        if int(width * candidate) == mlp_dim:
            return candidate
    raise ValueError(f"model.{tower}: width {width} / mlp_dim {mlp_dim} has no open_clip mlp_ratio "
                     f"with int(width * mlp_ratio) == mlp_dim")


# bigvl text pool → open_clip's pool_type ('last' there is position T−1: bigvl's 'final', or 'last' unmasked)
OPEN_CLIP_POOLS = {"eos": "argmax", "last": "last", "final": "last", "first": "first"}


def open_clip_model_config(model_cfg) -> dict:
    """open_clip's open_clip_config.json ({model_cfg: {embed_dim, quick_gelu, vision_cfg, text_cfg},
    preprocess_cfg: {mean, std}}) for a bigvl `config.model`."""
    ic, tc = model_cfg.image, model_cfg.text
    isz, tsz = image_size_of(ic), text_size_of(tc)
    if tc.mask_pads and not tc.causal:
        raise ValueError("model.text.mask_pads = True with bidirectional text: open_clip masks no pads")
    if tc.mask_pads and tc.pool == "last":
        raise ValueError("model.text.mask_pads = True with model.text.pool = 'last' (the last real token): "
                         "open_clip's 'last' is position T-1, pads included")
    text = {"context_length": tc.context_length, "vocab_size": tc.vocab_size, "width": tsz.width,
            "heads": tsz.num_heads, "layers": tsz.depth, "mlp_ratio": open_clip_mlp_ratio(tsz.width, tsz.mlp_dim, "text"),
            "no_causal_mask": not tc.causal, "proj_bias": bool(tc.proj_bias),
            "pool_type": OPEN_CLIP_POOLS.get(tc.pool)}
    if text["pool_type"] is None:
        raise ValueError(f"model.text.pool = {tc.pool!r} has no open_clip pool_type (eos, last, final, first have)")
    if tc.pool == "eos" and tc.eos_id != tc.vocab_size - 1:
        text.update(pool_type="eos", eos_id=tc.eos_id)
    if tc.pad_id != 0:
        text["pad_id"] = tc.pad_id
    model = {"embed_dim": model_cfg.embed_dim, "quick_gelu": model_cfg.activation == "quick_gelu",
             "vision_cfg": {"layers": isz.depth, "width": isz.width, "head_width": isz.width // isz.num_heads,
                            "mlp_ratio": open_clip_mlp_ratio(isz.width, isz.mlp_dim, "image"), "patch_size": isz.patch_size,
                            "image_size": ic.image_size, "no_ln_pre": not ic.ln_pre},
             "text_cfg": text}
    # open_clip builds nn.GELU(**act_kwargs) / LayerNorm(**norm_kwargs) in both towers (model.py)
    if model_cfg.activation == "gelu_tanh":
        for tower in ("vision_cfg", "text_cfg"):
            model[tower]["act_kwargs"] = {"approximate": "tanh"}
    if not math.isclose(model_cfg.layer_norm_eps, 1e-5):
        for tower in ("vision_cfg", "text_cfg"):
            model[tower]["norm_kwargs"] = {"eps": float(model_cfg.layer_norm_eps)}
    return {"model_cfg": model, "preprocess_cfg": {"mean": list(ic.pixel_mean), "std": list(ic.pixel_std)}}


def export_params(config, flat: dict, target: str, out: str) -> list[str]:
    """Writes `flat` bigvl params of a two-tower `config` in `target`'s format at `out`; returns the files."""
    model_cfg = config.model
    if model_cfg.get("kind", "two_tower") != "two_tower":
        raise ValueError(f"model.kind = {model_cfg.kind!r}: only two-tower (CLIP / SigLIP) models export")
    if target not in TARGETS:
        raise ValueError(f"--to {target!r} is not one of {TARGETS}")
    if model_cfg.activation not in ACTIVATION_OK[target]:
        raise ValueError(f"model.activation = {model_cfg.activation!r}: {target} supports {ACTIVATION_OK[target]}")
    what = f"export to {target}"
    if target == "hf":
        tensors = from_bigvl(hf.table(model_cfg), flat, what)
        os.makedirs(out, exist_ok=True)
        files = [os.path.join(out, "model.safetensors"), os.path.join(out, "config.json")]
        _save_safetensors(tensors, files[0])
        with open(files[1], "w") as f:
            json.dump(hf.hf_config(model_cfg), f, indent=2)
        return files
    tensors = from_bigvl(open_clip.table(model_cfg), flat, what)
    model_json = open_clip_model_config(model_cfg)
    os.makedirs(out, exist_ok=True)
    files = [os.path.join(out, OPEN_CLIP_WEIGHTS), os.path.join(out, OPEN_CLIP_CONFIG)]
    _save_safetensors(tensors, files[0])
    with open(files[1], "w") as f:
        json.dump(model_json, f, indent=2)
    return files


def export_workdir(workdir: str, target: str, out: str, step: int | None = None) -> list[str]:
    """Exports the params of `workdir` (latest step unless `step`); returns the files written."""
    config, flat, _ = read_params(workdir, step)
    return export_params(config, flat, target, out)
