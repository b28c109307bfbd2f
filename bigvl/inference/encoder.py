"""Encoding images and texts with trained params: what evaluators and notebooks use.

An `Encoder` holds the model, its params, the tokenizer and jitted functions (compiled
once per batch shape and reused across evaluations). Inputs run in fixed-size chunks
sharded over the mesh's batch axes (`bigvl.inference.batched.run_in_chunks`); every host
passes the same full input and gets the full output back.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import numpy as np

from bigvl.data.image_ops import eval_resize
from bigvl.data.naflex import naflex_image
from bigvl.data.tokenizer import Tokenizer
from bigvl.inference.batched import run_in_chunks
from bigvl.inference.decoding import make_captioner
from bigvl.inference.locca_decoding import make_locca_decoder
from bigvl.models import naflex
from bigvl.models.build import image_size_of, naflex_length, naflex_positions
from bigvl.parallel.mesh import batch_sharding


@dataclasses.dataclass(frozen=True)
class Encoder:
    params: Any
    tokenizer: Tokenizer
    image_size: int
    context_length: int
    mesh: jax.sharding.Mesh
    batch_size: int
    _encode_image: Callable
    _encode_text: Callable
    captioner: Any = None  # a bigvl.inference.decoding.Captioner for CoCa / CLIPS, else None
    _encode_image_with_patches: Callable | None = None  # two-tower models only
    resize: str = "crop_square"  # model.image.resize / .interpolation: how `prepare` squares an image
    interpolation: str = "bilinear"
    locca: Any = None  # a bigvl.inference.locca_decoding.LoccaBoxDecoder (model.locca.depth > 0), else None
    # NaFlex models (model.image.naflex): the patch budget L images are encoded at (model.image.max_patches or
    # (image_size / patch)²; `with_length` changes it), their patch size and grid rule; 0 = square images.
    max_patches: int = 0
    patch_size: int = 0
    naflex_grid: str = "closest_aspect"

    def prepare(self, image) -> np.ndarray:
        """An RGB PIL image of any size → uint8 [S,S,3] as the model's source prepared its inputs
        (`bigvl.data.image_ops.eval_resize` with model.image.resize and .interpolation); NaFlex models:
        its patches at budget L = max_patches, `naflex.pack`ed to uint8 [L + 1, p·p·3] (what
        `encode_images` takes, stacked)."""
        if self.max_patches:
            return naflex.pack(*naflex_image(image, self.patch_size, self.max_patches, self.naflex_grid,
                                             interpolation=self.interpolation))
        return eval_resize(image, self.image_size, self.resize, self.interpolation)

    def with_length(self, max_patches: int) -> "Encoder":
        """This NaFlex encoder at another patch budget (one compile per length); ValueError for square models."""
        if not self.max_patches:
            raise ValueError("a sequence length (max_patches) needs a NaFlex model (model.image.naflex)")
        if max_patches < 1:
            raise ValueError(f"max_patches must be ≥ 1, got {max_patches}")
        return self.replace(max_patches=int(max_patches))

    def replace(self, **changes) -> "Encoder":
        return dataclasses.replace(self, **changes)

    @property
    def has_patches(self) -> bool:
        """Whether the model has per-patch embeddings in the image-text space (two-tower models)."""
        return self._encode_image_with_patches is not None

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """images uint8 [N,S,S,3] → L2-normalised float32 [N,E]."""
        return self._run(self._encode_image, images)

    def encode_images_with_patches(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images uint8 [N,S,S,3] → (L2-normalised [N,E], L2-normalised patch embeddings [N,P,E]), one pass.

        Raises ValueError for models without per-patch embeddings in the joint space.
        """
        if not self.has_patches:
            raise ValueError("this model has no patch embeddings in the image-text space (two-tower only)")
        return self._run(self._encode_image_with_patches, images)

    def encode_patches(self, images: np.ndarray) -> np.ndarray:
        """images uint8 [N,S,S,3] → L2-normalised patch embeddings float32 [N,P,E] (row-major grid)."""
        return self.encode_images_with_patches(images)[1]

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """texts → L2-normalised float32 [N,E] (tokenised to the model's context length)."""
        return self._run(self._encode_text, self.tokenizer.encode(list(texts), self.context_length))

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """token ids int32 [N,L] (L <= the context length, right-padded) → L2-normalised float32 [N,E]."""
        return self._run(self._encode_text, tokens)

    def _run(self, fn: Callable, inputs: np.ndarray):
        return run_in_chunks(lambda x, _: fn(self.params, x), np.asarray(inputs), self.batch_size, self.mesh)


def make_encoder(model, params, tokenizer: Tokenizer, model_cfg, mesh, rules, batch_size: int) -> Encoder:
    """Builds an Encoder; `batch_size` is rounded up to a multiple of the device count."""
    devices = mesh.devices.size
    batch_size = -(-batch_size // devices) * devices

    naflex_on = bool(naflex_positions(model_cfg))

    def jitted(method, images: bool = True):
        def fn(params, x):
            with nn.logical_axis_rules(rules):
                return model.apply({"params": params}, naflex.unpack(x) if images and naflex_on else x, method=method)
        return jax.jit(fn, in_shardings=(None, batch_sharding(mesh)))

    with_patches = getattr(type(model), "encode_image_with_patches", None)
    return Encoder(params=params, tokenizer=tokenizer, image_size=model_cfg.image.image_size,
                   context_length=model_cfg.text.context_length, mesh=mesh, batch_size=batch_size,
                   _encode_image=jitted(type(model).encode_image),
                   _encode_text=jitted(type(model).encode_text, images=False),
                   captioner=make_captioner(model, tokenizer, model_cfg, mesh, rules, batch_size),
                   _encode_image_with_patches=jitted(with_patches) if with_patches is not None else None,
                   resize=model_cfg.image.get("resize", "crop_square"),
                   interpolation=model_cfg.image.get("interpolation", "bilinear"),
                   locca=make_locca_decoder(model, model_cfg, rules),
                   max_patches=naflex_length(model_cfg) if naflex_on else 0,
                   patch_size=image_size_of(model_cfg.image).patch_size,
                   naflex_grid=model_cfg.image.get("naflex_grid", "closest_aspect"))
