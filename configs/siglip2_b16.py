"""SigLIP 2's recipe at B/16 (Tschannen et al. 2025): SigLIP B/16 + the LocCa decoder (+ self-distillation
and masked prediction for the last 20 % of training: their keys at SigLIP 2's
settings, loss.self_distill / loss.masked_prediction defaults, docs/guides/siglip2.md).

    python -m bigvl.main --config siglip2_b16:siglip_locca --workdir /mnt/runs/siglip2_b16 \\
        --config.data.train_paths="['/mnt/recap/train-*.array_record']" \\
        --config.data.tokenizer=/mnt/gemma/tokenizer.model
    python -m bigvl.plan --config siglip2_b16:siglip_locca --topology v5e:16x16

Stages as configs/siglip2_demo.py (`:siglip`, `:siglip_locca`, `:siglip2`); mesh flags `:fsdp`, `:fsdp_tp`
as configs/b16_base.py. What comes from where:
- towers, sigmoid loss (t' = log 10, b = −10), optimizer: configs/siglip_b16.py (SigLIP's B/16);
- text: SigLIP 2 uses the multilingual Gemma tokenizer, 256k pieces, 64 tokens (SigLIP 2 §2.1);
- decoder: LocCa (Wan et al. 2024) on the un-pooled image tokens, trained on captioning, referring
  expressions and grounded captioning; SigLIP 2 §2.2 adds its loss to the sigmoid loss (weight 1)
  and drops the decoder after pretraining (bigvl.models.locca.strip_locca). 6 layers at the image
  width, as big_vision's CapPa configs (decoder_num_layers 6); parallel prediction for half of the
  examples (SigLIP 2 §2.2 as we read it; CapPa used 0.75, big_vision masked_pred_prob);
- coordinates: 1024 bins per axis (PaLI / PaliGemma's <loc> tokens; LocCa's own count is not
  stated in what we read), reserved ids past the tokenizer's (bigvl/models/locca.py).
Equal task weights (caption, refexp, grounded): our choice, LocCa's mixing weights were not checked.
"""
from bigvl.config import parse_config_args
from bigvl.configs import siglip_b16
from bigvl.configs.siglip2_demo import STAGES, apply_stage


def get_config(arg: str = ""):
    args = parse_config_args(arg, flags=STAGES + ("fsdp", "fsdp_tp"))
    c = siglip_b16.get_config(",".join(sorted(args.flags & {"fsdp", "fsdp_tp"})))
    c.model.text.vocab_size = 256_000  # Gemma's tokenizer
    c.model.text.context_length = 64
    c.model.locca.update(depth=6, num_bins=1024, context_length=64, task_weights=[1.0, 1.0, 1.0],
                         parallel_fraction=0.5)
    apply_stage(c, args.one_of(STAGES, "siglip_locca"))
    return c
