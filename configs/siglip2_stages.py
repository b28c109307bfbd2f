"""The stages of SigLIP 2's recipe as config switches, shared by configs/siglip2_demo.py and siglip2_b16.py.

    siglip        the sigmoid loss alone (model.locca.depth 0)
    siglip_locca  + the LocCa decoder (loss.locca_weight 1: SigLIP 2 adds the decoder loss to the sigmoid loss)
    siglip2       + self-distillation and masked prediction for the last 20 % of training (SigLIP 2 §2.3,
                  SILC / TIPS), part B of issue 35
"""
STAGES = ("siglip", "siglip_locca", "siglip2")


def apply_stage(c, stage: str) -> None:
    """Sets `c` (with model.locca sized) to `stage` in place; the decoder is off for `siglip`."""
    if stage == "siglip":
        c.model.locca.depth = 0
        for name in ("refexp",):  # needs the decoder
            if name in c.evals:
                c.evals[name].split = ""
        return
    c.loss.locca_weight = 1.0
    if stage == "siglip2":
        raise NotImplementedError(
            "config stage 'siglip2': self-distillation and masked prediction (issue 35 part B) are not built "
            "yet; run 'siglip_locca' for the LocCa stage alone")
