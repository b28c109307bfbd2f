"""Fine-tuning modes as the config changes that make them (configs' `:lit` / `:lora` flags).

    full  every param trains (the default)
    lit   LiT (Zhai et al. 2022): the image tower and its projection locked — no gradient, no
          optimizer state, no update (`optim.frozen`); the text tower, its head and the logit
          scale / bias train
    lora  LoRA (Hu et al. 2021): rank-r adapters on every attention q/k/v/out and MLP kernel of both
          towers (`model.lora`), trained alone with the logit scale / bias (`optim.trainable`);
          export and `bigvl.load` merge them into the kernels

Start from a trained or imported run with `--config.init.workdir=RUN` (docs/guides/fine_tuning.md).
"""
from __future__ import annotations

MODES = ("full", "lit", "lora")


def lit_frozen(model_cfg) -> list[str]:
    """`optim.frozen` that locks the image tower: its params, and its projection where it has one."""
    return ["image/.*"] + (["image_proj/.*"] if model_cfg.image.proj else [])


def lora_trainable(model_cfg) -> list[str]:
    """`optim.trainable` of a LoRA run: the adapters, the logit scale, the SigLIP bias where there is one."""
    return [".*/lora_[ab]", "log_logit_scale"] + (["logit_bias"] if model_cfg.bias_init is not None else [])


def split_mode(arg: str) -> tuple[str, str]:
    """A config argument with a fine-tuning flag ('lit' / 'lora', at most one) taken out:
    'lit,fsdp' → ('lit', 'fsdp'); no flag → ('', arg). ValueError for both at once."""
    parts = [p.strip() for p in arg.split(",") if p.strip()]
    modes = [p for p in parts if p in MODES[1:]]
    if len(modes) > 1:
        raise ValueError(f"config flags {modes} : give one fine-tuning mode")
    return (modes[0] if modes else ""), ",".join(p for p in parts if p not in MODES[1:])


def apply_fine_tuning(config, mode: str, lora_rank: int = 8, lora_alpha: float = 16.0) -> None:
    """Sets `config` (in place) for fine-tuning `mode` (MODES); ValueError naming the modes otherwise."""
    if mode not in MODES:
        raise ValueError(f"fine-tuning mode {mode!r} is not one of {MODES}")
    if mode == "lit":
        config.optim.frozen = lit_frozen(config.model)
    elif mode == "lora":
        config.model.lora.update(rank=lora_rank, alpha=lora_alpha)
        config.optim.trainable = lora_trainable(config.model)
