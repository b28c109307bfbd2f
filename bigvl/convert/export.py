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

Exports carry what decides the model's inputs. hf: the tokenizer (tokenizer.json, or a sentencepiece
model as spiece.model for text normalised as SigLIP's) with tokenizer_config.json (its class and the
model's context length), and preprocessor_config.json (model.image.resize / interpolation / mean /
std as CLIPImageProcessor or SiglipImageProcessor). open_clip: preprocess_cfg's resize_mode and
interpolation; open_clip tokenises with CLIP's BPE unless text_cfg.hf_tokenizer_name names a hub
tokenizer, so a run with another tokenizer is refused unless `hf_tokenizer_name` is given.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil

import numpy as np

from bigvl.convert import hf, open_clip
from bigvl.convert.layout import from_bigvl, safetensors_numpy
from bigvl.convert.workdir import read_params
from bigvl.models import image_size_of, text_size_of
from bigvl.models.build import naflex_length

TARGETS = ("hf", "open_clip")
# model.image.resize → open_clip's preprocess_cfg resize_mode (crop_square: the same central square,
# cropped after resizing instead of before) and HF's resample ids (PIL's)
OPEN_CLIP_RESIZE = {"crop_square": "shortest", "shorter_side": "shortest", "shorter_side_hf": "shortest",
                    "squash": "squash"}
HF_RESAMPLE_IDS = {name: pil_id for pil_id, name in hf.HF_RESAMPLE.items()}
OPEN_CLIP_BPE = "bpe_simple_vocab_16e6.txt.gz"  # open_clip's own tokenizer file

log = logging.getLogger(__name__)
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
    return {"model_cfg": model, "preprocess_cfg": {
        "mean": list(ic.pixel_mean), "std": list(ic.pixel_std),
        "resize_mode": OPEN_CLIP_RESIZE[ic.get("resize", "crop_square")],
        "interpolation": ic.get("interpolation", "bilinear")}}


def open_clip_tokenizer(config, hf_tokenizer_name: str = "") -> dict:
    """text_cfg entries that make open_clip tokenise as the run did: {} for open_clip's own CLIP BPE
    file (or a run without tokenizer, e.g. imported weights alone: noted in the log),
    {"hf_tokenizer_name": name} when given; ValueError (one line, the way out) for any other tokenizer."""
    if hf_tokenizer_name:
        return {"hf_tokenizer_name": hf_tokenizer_name}
    path = config.data.get("tokenizer", "")
    if not path:
        log.warning("export to open_clip: the run has no tokenizer; open_clip will tokenise with its CLIP BPE")
        return {}
    if os.path.basename(path) == OPEN_CLIP_BPE:
        return {}
    raise ValueError(f"the run's tokenizer {path!r} is not open_clip's {OPEN_CLIP_BPE}, and open_clip "
                     "would silently tokenise with it: give --hf_tokenizer_name NAME (an HF hub tokenizer equal to the "
                     "run's, written to text_cfg.hf_tokenizer_name), or export --to hf, which writes the tokenizer files")


def hf_input_files(config, out: str) -> list[str]:
    """Writes the tokenizer files and preprocessor_config.json of an HF export into `out`; returns the
    files written (what could not be written, and why, goes to the log)."""
    mc, files = config.model, []
    ic, tc, siglip = mc.image, mc.text, mc.image.pool == "map"
    resize = ic.get("resize", "crop_square")
    processor = {"image_processor_type": "SiglipImageProcessor" if siglip else "CLIPImageProcessor",
                 "do_resize": True, "resample": HF_RESAMPLE_IDS[ic.get("interpolation", "bilinear")],
                 "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                 "image_mean": list(ic.pixel_mean), "image_std": list(ic.pixel_std), "do_convert_rgb": True}
    if ic.get("naflex"):  # Siglip2Model: patches at the aspect ratio, transformers' grid rule
        if ic.get("naflex_grid", "closest_aspect") != "siglip2":
            log.warning("export to hf: model.image.naflex_grid = %r: transformers' Siglip2ImageProcessor chooses "
                        "grids by its own rule ('siglip2'), so its inputs may differ from the run's", ic.naflex_grid)
        processor.update(image_processor_type="Siglip2ImageProcessor", patch_size=image_size_of(ic).patch_size,
                         max_num_patches=naflex_length(mc))
    elif resize == "squash":
        processor.update(size={"height": ic.image_size, "width": ic.image_size}, do_center_crop=False)
    else:
        processor.update(size={"shortest_edge": ic.image_size}, do_center_crop=True,
                         crop_size={"height": ic.image_size, "width": ic.image_size})
    if (resize == "squash") != siglip and not ic.get("naflex"):
        log.warning("export to hf: model.image.resize = %r: transformers' %s is written with it, which its own "
                    "default would not be", resize, processor["image_processor_type"])
    files.append(os.path.join(out, "preprocessor_config.json"))
    with open(files[-1], "w") as f:
        json.dump(processor, f, indent=2)
    path = config.data.get("tokenizer", "")
    tokenizer_config = {"model_max_length": int(tc.context_length)}
    if path.endswith("tokenizer.json"):
        files.append(os.path.join(out, "tokenizer.json"))
        tokenizer_config.update(tokenizer_class="CLIPTokenizer", pad_token="<|endoftext|>")
    elif path.endswith(".model") and siglip and tc.get("normalize", "") == "siglip":
        files.append(os.path.join(out, "spiece.model"))
        tokenizer_config.update(tokenizer_class="SiglipTokenizer")
    else:
        log.warning("export to hf: no tokenizer files written: transformers has no tokenizer that reads %r as the run "
                    "does (HF CLIP: a tokenizer.json; HF SigLIP: a sentencepiece model with model.text.normalize = "
                    "'siglip')", path or "(none)")
        return files
    shutil.copyfile(path, files[-1])
    files.append(os.path.join(out, "tokenizer_config.json"))
    with open(files[-1], "w") as f:
        json.dump(tokenizer_config, f, indent=2)
    return files


def export_params(config, flat: dict, target: str, out: str, hf_tokenizer_name: str = "") -> list[str]:
    """Writes `flat` bigvl params of a two-tower `config` in `target`'s format at `out`, with what decides
    its inputs (tokenizer, preprocessing: the module docstring); returns the files. Notes about what
    could not be carried go to the log."""
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
        return files + hf_input_files(config, out)
    tensors = from_bigvl(open_clip.table(model_cfg), flat, what)
    model_json = open_clip_model_config(model_cfg)
    model_json["model_cfg"]["text_cfg"].update(open_clip_tokenizer(config, hf_tokenizer_name))
    os.makedirs(out, exist_ok=True)
    files = [os.path.join(out, OPEN_CLIP_WEIGHTS), os.path.join(out, OPEN_CLIP_CONFIG)]
    _save_safetensors(tensors, files[0])
    with open(files[1], "w") as f:
        json.dump(model_json, f, indent=2)
    return files


def export_workdir(workdir: str, target: str, out: str, step: int | None = None, hf_tokenizer_name: str = "") -> list[str]:
    """Exports the params of `workdir` (latest step unless `step`); returns the files written."""
    config, flat, _ = read_params(workdir, step)
    return export_params(config, flat, target, out, hf_tokenizer_name)
