"""Fine-tuning's start-up check: the training config computes what the run it starts from computed.

A run started with `init.workdir` takes that run's params (an imported open_clip / HF / big_vision
checkpoint, or a bigvl run) but builds the model from its own `config.model`. Param shapes are
checked when the params load (bigvl.models.pretrained.adapt_params); options that change no shape
(`activation`, `layer_norm_eps`, `image.pixel_mean` / `pixel_std`, `text.mask_pads`, the pools,
`text.causal`, the special token ids) would silently change what the model computes, so they are
compared here, before anything compiles: every `model.image.*` / `model.text.*` key (sizes as
resolved from `variant`), `embed_dim`, `activation`, `layer_norm_eps`, `max_logit_scale` and whether
there is a logit bias. Keys that may differ when fine-tuning are left out: `text.context_length`
(Long-CLIP stretches positions), `dtype`, `param_dtype`, `remat`, `scan_layers`, `pooled_last_block`,
`attention_impl`, `weight_grad_dot`, `temperature_init` (the scale comes from the params), and the
text positions' kind (`text.pos_emb`, `text.rope_*`: TULIP's RoPE tower starts from a learned-position
run) — `MAY_DIFFER`. The captioners' decoder is not compared.
"""
from __future__ import annotations

from typing import Any

from bigvl.inference.run import read_run_config
from bigvl.models import image_size_of, text_size_of

MAY_DIFFER = ("text.context_length", "dtype", "param_dtype", "remat", "scan_layers", "pooled_last_block",
              "attention_impl", "weight_grad_dot", "temperature_init",
              # TULIP: a RoPE text tower starts from a learned-position run (every param but the table)
              "text.pos_emb", "text.rope_base", "text.rope_train_length")
TOP_KEYS = ("embed_dim", "activation", "layer_norm_eps", "max_logit_scale", "bias_init")
SIZE_KEYS = ("variant", "width", "depth", "num_heads", "mlp_dim", "patch_size")


def _plain(value: Any) -> Any:
    """JSON lists back to tuples (pixel_mean); numbers compare as numbers (100 == 100.0)."""
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


def architecture(model_cfg) -> dict[str, Any]:
    """{'image.pool': 'cls', 'activation': 'gelu_tanh', ...}: the keys `check_init_architecture` compares."""
    out = {}
    for tower, size_of in (("image", image_size_of), ("text", text_size_of)):
        cfg = model_cfg[tower]
        out.update({f"{tower}.{k}": _plain(v) for k, v in cfg.items() if k not in SIZE_KEYS})
        size = size_of(cfg)
        for key in SIZE_KEYS[1:]:
            if tower == "image" or key != "patch_size":
                out[f"{tower}.{key}"] = _plain(getattr(size, key))
    out.update({k: _plain(model_cfg.get(k)) for k in TOP_KEYS})
    out["bias_init"] = "a logit bias" if out["bias_init"] is not None else "no logit bias"
    return {k: v for k, v in out.items() if k not in MAY_DIFFER}


def architecture_differences(source_model_cfg, model_cfg) -> list[str]:
    """'model.KEY = HERE here, THERE in the run' for each compared key that differs (sorted)."""
    here, there = architecture(model_cfg), architecture(source_model_cfg)
    return [f"model.{k} = {here.get(k)!r} here, {there.get(k)!r} in the run"
            for k in sorted(set(here) | set(there)) if here.get(k) != there.get(k)]


def check_init_architecture(model_cfg, init_workdir: str) -> None:
    """Raises ValueError (one line naming every differing key and both values) when the training
    `config.model` would compute something else than run `init_workdir`'s saved config.json."""
    source = read_run_config(init_workdir)
    differences = architecture_differences(source.model, model_cfg)
    if differences:
        raise ValueError(f"init.workdir {init_workdir!r}: the training config's model differs from the run it "
                         f"starts from: {'; '.join(differences)} (`python -m bigvl.convert flags --workdir "
                         f"{init_workdir}` prints overrides that match it)")
