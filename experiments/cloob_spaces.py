"""Where a CLOOB run aligned images and texts: retrieval R@1 of its raw embeddings against the same
embeddings after CLOOB's Hopfield retrieval (the space its loss compares).

    python -m experiments.cloob_spaces WORKDIR [WORKDIR ...]

For each trained run, encodes the demo world's held-out retrieval split (images, short captions),
then scores text→image and image→text R@1 (a) on the raw embeddings x, y (what the evaluators use)
and (b) on the image-store retrievals U_x = Ret(x; X), U_y = Ret(y; X) and on the text-store ones
V_x = Ret(x; Y), V_y = Ret(y; Y) (bigvl/losses/cloob.py, β = the run's loss.cloob_beta, the split
as the stores). Also the mean cosine of matched pairs and of all pairs on the raw embeddings.
Prints one JSON line per run.
"""
from __future__ import annotations

import json
import logging
import sys

import jax.numpy as jnp
import numpy as np

from bigvl.evaluators.retrieval import caption_texts, recall_at_k
from bigvl.evaluators.splits import SplitCache
from bigvl.inference.run import load_run
from bigvl.losses.cloob import CODE_BETA, hopfield_retrieval
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


def main(argv: list[str] | None = None) -> int:
    workdirs = sys.argv[1:] if argv is None else argv
    if not workdirs:
        raise SystemExit(__doc__)
    setup_process("%(levelname)s %(name)s: %(message)s", logging.WARNING)
    for workdir in workdirs:
        print(json.dumps(spaces(workdir)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
