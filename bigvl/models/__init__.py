"""bigvl models: the towers, CLIP/SigLIP (`TwoTower`), CoCa and CLIPS, built from `config.model`.

    model = build_model(config.model)
    params = nn.unbox(model.init(rng, images, tokens)["params"])   # boxed leaves carry logical names
    out = model.apply({"params": params}, images, tokens)           # dict, see TwoTower
    z = model.apply({"params": params}, images, method=TwoTower.encode_image)

The builder is `build.py` (`model_config_defaults`, `build_model`), the execution options
`options.py`, params-tree helpers `param_tree.py`; the names below are re-exported here.
"""
from __future__ import annotations

from bigvl.models.build import build_model, dummy_inputs, image_size_of, model_config_defaults, text_size_of
from bigvl.models.options import ModelOptions
from bigvl.models.param_tree import count_params, param_path
from bigvl.models.text import TextTower
from bigvl.models.two_tower import TwoTower
from bigvl.models.vit import VisionTower

__all__ = ["TwoTower", "VisionTower", "TextTower", "ModelOptions", "model_config_defaults", "build_model",
           "count_params", "param_path", "dummy_inputs", "image_size_of", "text_size_of"]
