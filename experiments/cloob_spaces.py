"""Where a CLOOB run aligned images and texts: retrieval R@1 of its raw embeddings against the same
embeddings after CLOOB's Hopfield retrieval (the space its loss compares).

    python -m experiments.cloob_spaces [--gradients] WORKDIR [WORKDIR ...]

For each trained run, encodes the demo world's held-out retrieval split (images, short captions),
then scores text→image and image→text R@1 (a) on the raw embeddings x, y (what the evaluators use)
and (b) on the image-store retrievals U_x = Ret(x; X), U_y = Ret(y; X) and on the text-store ones
V_x = Ret(x; Y), V_y = Ret(y; Y) (bigvl/losses/cloob.py, β = the run's loss.cloob_beta, the split
as the stores). Also the mean cosine of matched pairs and of all pairs on the raw embeddings.
Prints one JSON line per run.

`--gradients`: why a CLOOB run stays in a narrow cone. On one training-sized batch (the split's first 64
images with their alt-texts, what `cloob` trains on), for the run's params and for the same model at
random init (seed 0): the mean cosine of image–image, text–text and image–text pairs, the effective
number of memories a Hopfield retrieval at β mixes (exp of the softmax's entropy, of 64), and for the
CLOOB loss (β ∈ BETAS, 1/τ = the run's) and InfoNCE (same 1/τ) the rate at which a step along the
loss's negative gradient on the unit-norm embeddings (normalised to length 1) changes the mean cosine
of matched pairs, all image–text pairs, image–image and text–text pairs (`d_matched`, `d_all`,
`d_image_image`, `d_text_text`: > 0 closes those pairs up), and the gradient's norm.
"""
from __future__ import annotations

import json
import logging
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bigvl.evaluators.retrieval import caption_texts, recall_at_k
from bigvl.evaluators.splits import SplitCache
from bigvl.inference.run import load_run
from bigvl.losses.cloob import CODE_BETA, cloob_loss, hopfield_retrieval
from bigvl.losses.contrastive import softmax_contrastive_loss
from bigvl.parallel.process import setup_process


def spaces(workdir: str) -> dict:
    """The R@1 of one run's raw and Hopfield-retrieved embeddings on its retrieval split."""
    run = load_run(workdir)
    split = run.config.evals.retrieval.split
    images, records = SplitCache(run.encoder).load(split)
    x = run.encoder.encode_images(images)
    y = run.encoder.encode_texts(caption_texts(records, "short"))
    beta = float(run.config.loss.get("cloob_beta", CODE_BETA))
    u_x, u_y = (np.asarray(hopfield_retrieval(jnp.asarray(a), jnp.asarray(x), beta)) for a in (x, y))
    v_x, v_y = (np.asarray(hopfield_retrieval(jnp.asarray(a), jnp.asarray(y), beta)) for a in (x, y))
    out = {"workdir": workdir, "beta": beta, "matched_cos": float(np.mean(np.sum(x * y, axis=1))),
           "all_pairs_cos": float(np.mean(x @ y.T))}
    for name, (a, b) in {"raw": (x, y), "image_store": (u_x, u_y), "text_store": (v_x, v_y)}.items():
        recall = recall_at_k(a, b, ks=(1,))
        out.update({f"{name}/{k}": v for k, v in recall.items()})
    return out


BETAS, BATCH = (1.0, CODE_BETA, 50.0), 64


def _cosines(x: jax.Array, y: jax.Array) -> tuple[jax.Array, ...]:
    """Rows of x, y [B, D], normalised → mean cosines: matched pairs, all image–text pairs, image–image, text–text."""
    x, y = x / jnp.linalg.norm(x, axis=1, keepdims=True), y / jnp.linalg.norm(y, axis=1, keepdims=True)
    return jnp.mean(jnp.sum(x * y, axis=1)), jnp.mean(x @ y.T), jnp.mean(x @ x.T), jnp.mean(y @ y.T)


def descent_rates(loss_fn, x: jax.Array, y: jax.Array) -> dict:
    """`_cosines`' rates of change per unit step along −∇loss(x, y) (the gradient made length 1)."""
    gx, gy = jax.grad(loss_fn, argnums=(0, 1))(x, y)
    norm = jnp.sqrt(jnp.sum(gx * gx) + jnp.sum(gy * gy))
    _, rates = jax.jvp(_cosines, (x, y), (-gx / norm, -gy / norm))
    return {**{f"d_{k}": float(r) for k, r in zip(("matched", "all", "image_image", "text_text"), rates)},
            "grad_norm": float(norm)}


def batch_state(x: np.ndarray, y: np.ndarray, inv_tau: float) -> dict:
    """The cone and what each loss's gradient does to it, on one batch of unit embeddings x, y [B, D]."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    off = ~np.eye(x.shape[0], dtype=bool)
    out = {"image_image_cos": float(jnp.mean((x @ x.T)[off])), "text_text_cos": float(jnp.mean((y @ y.T)[off])),
           "image_text_cos": float(jnp.mean((x @ y.T)[off]))}
    for beta in BETAS:
        p = jax.nn.softmax(beta * (x @ x.T), axis=-1)
        out[f"memories_beta{beta:g}"] = float(jnp.mean(jnp.exp(-jnp.sum(p * jnp.log(p + 1e-30), axis=-1))))
        out[f"cloob_beta{beta:g}"] = descent_rates(lambda a, b, beta=beta: cloob_loss(a, b, inv_tau, beta), x, y)
    out["infonce"] = descent_rates(lambda a, b: softmax_contrastive_loss(a, b, inv_tau), x, y)
    return out


def gradients(workdir: str) -> dict:
    """`batch_state` of one run's trained params and of the same model at random init."""
    run = load_run(workdir)
    images, records = SplitCache(run.encoder).load(run.config.evals.retrieval.split)
    images, texts = images[:BATCH], [r["alt_text"] for r in records[:BATCH]]
    size, length = run.config.model.image.image_size, run.config.model.text.context_length
    init = nn.unbox(jax.jit(run.model.init)(jax.random.key(0), np.zeros((1, size, size, 3), np.uint8),
                                            np.zeros((1, length), np.int32))["params"])
    inv_tau = float(np.exp(np.asarray(run.params["log_logit_scale"])))  # 1/τ as trained
    out = {"workdir": workdir, "inv_tau": inv_tau}
    for name, encoder in (("trained", run.encoder), ("init", run.encoder.replace(params=init))):
        out[name] = batch_state(encoder.encode_images(images), encoder.encode_texts(texts), inv_tau)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    workdirs = [a for a in args if a != "--gradients"]
    if not workdirs:
        raise SystemExit(__doc__)
    setup_process("%(levelname)s %(name)s: %(message)s", logging.WARNING)
    for workdir in workdirs:
        print(json.dumps(gradients(workdir) if "--gradients" in args else spaces(workdir)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
