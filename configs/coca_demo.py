"""The CoCa demo: a small CoCa trained on the built-in synthetic world on a CPU in minutes.

    python -m bigvl.main --config coca_demo --workdir workdirs/coca_demo

Contrastive and captioning both on the short synthetic caption (`recap`; the decoder
captions the contrastive text, as open_clip's CoCa); loss = 1 · InfoNCE + 2 · caption
cross-entropy. Evaluates zero-shot, retrieval, and CIDEr-D / BLEU-4 of greedy captions
of the held-out retrieval images against their short captions. World as configs/demo.py
(cached under $BIGVL_CACHE, default ~/.cache/bigvl).
"""
from bigvl.config import load_config, parse_config_args


def get_config(arg: str = ""):
    parse_config_args(arg)  # no arguments: any is an error
    c = load_config("demo")  # world, towers, optim
    c.eval_steps = 0
    c.ckpt_steps = 300
    c.data.caption_strategy = "recap"
    c.data.caption_field = "short"

    m = c.model
    m.kind = "coca"
    m.text.depth = 2  # CoCa: the unimodal half of the text layers; the decoder is the other half
    m.decoder.update(depth=2, context_length=32, num_queries=32, pooler_heads=4)

    c.evals.long_retrieval.split = ""
    c.evals.hard_negatives.split = ""
    c.evals.pointing.split = ""  # two-tower patch embeddings only
    c.evals.captioning = dict(type="captioning", split=c.evals.retrieval.split)
    return c
