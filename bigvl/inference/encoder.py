"""Encoding images and texts with trained params: what evaluators and notebooks use.

An `Encoder` holds the model, its params, the tokenizer and two jitted functions
(compiled once per batch shape and reused across evaluations). Inputs are split into
fixed-size chunks sharded over the mesh's batch axes; every host passes the same full
input and gets the full output back.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils

from bigvl.data.tokenizer import Tokenizer
from bigvl.parallel.mesh import batch_sharding, host_local_to_global


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
    _encode_patches: Callable | None = None  # two-tower models only

    def replace(self, **changes) -> "Encoder":
        return dataclasses.replace(self, **changes)

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """images uint8 [N,S,S,3] → L2-normalised float32 [N,E]."""
        return self._run(self._encode_image, np.asarray(images))

    def encode_patches(self, images: np.ndarray) -> np.ndarray:
        """images uint8 [N,S,S,3] → L2-normalised patch embeddings float32 [N,P,E] (row-major grid).

        Raises ValueError for models without per-patch embeddings in the joint space.
        """
        if self._encode_patches is None:
            raise ValueError("this model has no patch embeddings in the image-text space (two-tower only)")
        return self._run(self._encode_patches, np.asarray(images))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """texts → L2-normalised float32 [N,E] (tokenised to the model's context length)."""
        return self._run(self._encode_text, self.tokenizer.encode(list(texts), self.context_length))

    def _run(self, fn: Callable, inputs: np.ndarray) -> np.ndarray:
        n, chunk = len(inputs), self.batch_size
        hosts, host = jax.process_count(), jax.process_index()
        outputs = []
        for start in range(0, n, chunk):
            part = inputs[start:start + chunk]
            if len(part) < chunk:  # pad the last chunk: one compiled shape
                part = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), axis=0)])
            local = part[host * chunk // hosts:(host + 1) * chunk // hosts]
            out = fn(self.params, host_local_to_global({"x": local}, self.mesh)["x"])
            if hosts > 1:
                out = multihost_utils.process_allgather(out, tiled=True)
            outputs.append(np.asarray(out))
        return np.concatenate(outputs)[:n]


def make_encoder(model, params, tokenizer: Tokenizer, model_cfg, mesh, rules, batch_size: int) -> Encoder:
    """Builds an Encoder; `batch_size` is rounded up to a multiple of the device count."""
    from bigvl.inference.decoding import make_captioner
    devices = mesh.devices.size
    batch_size = -(-batch_size // devices) * devices

    def jitted(method):
        def fn(params, x):
            with nn.logical_axis_rules(rules):
                return model.apply({"params": params}, x, method=method)
        return jax.jit(fn, in_shardings=(None, batch_sharding(mesh)))

    return Encoder(params=params, tokenizer=tokenizer, image_size=model_cfg.image.image_size,
                   context_length=model_cfg.text.context_length, mesh=mesh, batch_size=batch_size,
                   _encode_image=jitted(type(model).encode_image),
                   _encode_text=jitted(type(model).encode_text),
                   captioner=make_captioner(model, tokenizer, model_cfg, mesh, rules, batch_size),
                   _encode_patches=jitted(type(model).encode_patches) if hasattr(model, "encode_patches") else None)
