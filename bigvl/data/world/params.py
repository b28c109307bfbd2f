"""The parameters a synthetic world depends on (`WorldParams`); the manifest stores them."""
from __future__ import annotations

import dataclasses
from typing import Mapping

from bigvl.data.world.alt_text import AltTextNoise
from bigvl.data.world.scene import SceneStyle


@dataclasses.dataclass(frozen=True)
class WorldParams:
    """Everything a world depends on; the manifest stores it and `ensure_world` compares it."""
    seed: int = 0
    image_size: int = 64
    num_train: int = 20000
    num_train_shards: int = 4
    num_zeroshot: int = 600
    num_retrieval: int = 500
    num_hard_negatives: int = 500
    num_rewrites: int = 2
    vocab_size: int = 1024
    jpeg_quality: int = 95
    noise: AltTextNoise = AltTextNoise()
    scene: SceneStyle = SceneStyle()
    # Fraction of train records that carry captions (the rest: alt-text only, as where good
    # captions are scarce); which ones is fixed by the seed, images and texts are unchanged.
    caption_fraction: float = 1.0

    def __post_init__(self):
        if self.image_size < 16:
            raise ValueError(f"image_size must be ≥ 16, got {self.image_size}")
        if self.num_train < 1 or not 1 <= self.num_train_shards <= self.num_train:
            raise ValueError(f"need 1 ≤ num_train_shards ({self.num_train_shards}) ≤ num_train ({self.num_train})")
        if min(self.num_zeroshot, self.num_retrieval, self.num_hard_negatives) < 1:
            raise ValueError("every held-out split needs at least one example")
        if not 0.0 <= self.caption_fraction <= 1.0:
            raise ValueError(f"caption_fraction must be in [0, 1], got {self.caption_fraction}")
        if self.num_rewrites < 0:
            raise ValueError(f"num_rewrites must be ≥ 0, got {self.num_rewrites}")


def world_params(**kwargs) -> WorldParams:
    """WorldParams from keyword arguments; `noise` / `scene` may be an AltTextNoise / SceneStyle or a dict."""
    unknown = set(kwargs) - {f.name for f in dataclasses.fields(WorldParams)}
    if unknown:
        raise TypeError(f"unknown synthetic world parameters {sorted(unknown)}")
    for key, kind in (("noise", AltTextNoise), ("scene", SceneStyle)):
        value = kwargs.get(key)
        if value is None:
            kwargs.pop(key, None)
        elif isinstance(value, Mapping):
            unknown = set(value) - {f.name for f in dataclasses.fields(kind)}
            if unknown:
                raise TypeError(f"unknown synthetic world {key} parameters {sorted(unknown)}")
            kwargs[key] = kind(**value)
    return WorldParams(**kwargs)

