"""Reading a published checkpoint (open_clip, HF, big_vision) into a bigvl config + params.

    config, params = import_checkpoint("open_clip", "ViT-B-16.safetensors", model_json="ViT-B-16.json")
    write_workdir("workdirs/b16", config, params, tokenizer="bpe_simple_vocab_16e6.txt.gz")

safetensors files are read with `safetensors.numpy` (no torch); a `.pt` / `.bin` state dict needs
torch, imported only on that path.
"""
from __future__ import annotations

import json
import os
import sys
import zipfile
from typing import Mapping

import numpy as np

from bigvl.convert import big_vision, hf, open_clip
from bigvl.convert.layout import safetensors_numpy, to_bigvl
from bigvl.convert.workdir import check_params, model_config

SOURCES = ("open_clip", "hf", "big_vision")


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """A state dict file → {key: float32/int np.ndarray}: .safetensors (numpy), .pt/.bin (torch), .npz."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if path.endswith(".safetensors"):
        return dict(safetensors_numpy().load_file(path))
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    if path.endswith((".pt", ".pth", ".bin")):
        if is_torchscript(path):
            raise ValueError(f"{path!r} is a TorchScript archive (OpenAI's clip.load format), not a state dict: "
                             "save its weights once with torch, e.g. safetensors.torch.save_file({k: v.float() "
                             "for k, v in torch.jit.load(path, map_location='cpu').state_dict().items()}, "
                             "'model.safetensors'), and import that file")
        try:
            import torch  # optional: torch checkpoints only
        except ImportError:
            raise ValueError(f"{path!r} is a torch pickle and torch is not installed: install torch, or convert "
                             "it to .safetensors (safetensors.torch.save_file(state_dict, 'x.safetensors'))") from None
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd:  # open_clip training checkpoints
            sd = sd["state_dict"]
        if hasattr(sd, "state_dict"):  # a TorchScript OpenAI model
            sd = sd.state_dict()
        return {k[len("module."):] if k.startswith("module.") else k: v.float().numpy() if v.is_floating_point()
                else v.numpy() for k, v in sd.items()}
    raise ValueError(f"checkpoint {path!r}: unknown file type (want .safetensors, .npz, .pt, .pth or .bin)")


def is_torchscript(path: str) -> bool:
    """A TorchScript archive (torch.jit.save): a zip with `<name>/code/` sources and `<name>/constants.pkl`,
    which torch.load(weights_only=True) cannot read; told apart without torch."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") for n in names)


def _apply_sets(model: dict, sets: Mapping[str, str]) -> dict:
    """`model.a.b=value` overrides (value parsed as JSON, else a string) into the nested dict."""
    for key, text in sets.items():
        if not key.startswith("model."):
            raise ValueError(f"--set {key}: only model.* keys can be set at import")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *parents, leaf = key.split(".")[1:]
        node = model
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = tuple(value) if isinstance(value, list) else value
    return model


def import_checkpoint(source: str, path: str, model_json: str | None = None,
                      sets: Mapping[str, str] | None = None):
    """(full config, flat bigvl params {path: array}) of a published checkpoint.

    source: 'open_clip' (a state dict file and `model_json`, open_clip's model config JSON; or a
    directory in open_clip's hub layout: open_clip_config.json + open_clip_model.safetensors),
    'hf' (a save_pretrained directory) or 'big_vision' (an .npz). sets: `model.*` overrides applied
    after inference (e.g. {"model.activation": "quick_gelu"}). Raises ValueError / FileNotFoundError
    with one line naming the key or file at fault.
    """
    sets = dict(sets or {})
    if source == "open_clip":
        if os.path.isdir(path):  # open_clip's hub / local-dir layout
            model_json = model_json or os.path.join(path, "open_clip_config.json")
            path = _first_file(path, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin",
                                      "model.safetensors"))
        sd = read_state_dict(path)
        mj = None
        if model_json:
            with open(model_json) as f:
                mj = json.load(f)
        model = _apply_sets(open_clip.infer_config(sd, mj), sets)
        note = None if "model.activation" in sets else open_clip.activation_note(sd, mj, model.get("activation"))
        if note:
            print(note, file=sys.stderr)
        if "activation" not in model:
            raise ValueError("an open_clip state dict does not record its activation: pass --model-config "
                             "(open_clip's model JSON) or --set model.activation=quick_gelu (OpenAI weights) | gelu")
        table, ignore, data = open_clip.table, open_clip.ignored, sd
    elif source == "hf":
        config_path, weights = os.path.join(path, "config.json"), os.path.join(path, "model.safetensors")
        for p in (config_path, weights):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"HF model directory {path!r}: no {os.path.basename(p)}")
        with open(config_path) as f:
            hf_cfg = json.load(f)
        sd = read_state_dict(weights)
        processor_path = os.path.join(path, "preprocessor_config.json")
        processor = {}
        if os.path.isfile(processor_path):
            with open(processor_path) as f:
                processor = json.load(f)
        model = _apply_sets(hf.infer_config(hf_cfg, sd, processor), sets)
        table, ignore, data = hf.table, hf.ignored, sd
    elif source == "big_vision":
        params = big_vision.normalize_keys(read_state_dict(path))
        model = _apply_sets(big_vision.infer_config(params), sets)
        table, ignore, data = big_vision.table, (lambda key: False), params
    else:
        raise ValueError(f"--from {source!r} is not one of {SOURCES}")
    config = model_config(model)
    if config.model.bias_init is not None:  # a learned logit bias: SigLIP, trained with the sigmoid loss, so
        config.loss.name = "sigmoid"  # its zero-shot probabilities are per-class sigmoids (bigvl.api)
    flat = to_bigvl(table(config.model), data, f"{source} checkpoint {path}", ignore)
    return config, check_params(config.model, flat, f"{source} checkpoint {path}")


def _first_file(directory: str, names: tuple[str, ...]) -> str:
    for name in names:
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    raise FileNotFoundError(f"{directory!r} holds none of {names}")


def default_tokenizer(source: str, path: str) -> str | None:
    """The tokenizer file an HF model directory carries (tokenizer.json, else spiece.model), if any."""
    if source != "hf":
        return None
    for name in ("tokenizer.json", "spiece.model"):
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    return None
