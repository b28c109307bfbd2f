# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # bigvl quickstart: a CLIP and a CoCa on synthetic recaptioned data, in a few minutes
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/bigvl/blob/main/docs/colab/quickstart.ipynb)
#
# This notebook builds bigvl's built-in synthetic world (coloured shapes whose images carry a
# noisy web **alt-text** *and* true **synthetic captions**, like a recaptioned web dataset),
# trains a small CLIP on it for about a minute with a live loss curve, then uses the notebook
# API: zero-shot classification, text→image retrieval, a text→patch similarity map (where the
# model "looks" for "a red circle"), and captions from a small CoCa.
#
# It runs unchanged on a Colab CPU, GPU or TPU runtime: the mesh is built from
# `jax.devices()`. Nothing is downloaded but the package. Source of truth: `docs/colab/quickstart.py`
# (jupytext percent format); the `.ipynb` is generated from it (`jupytext --to ipynb`). With
# `BIGVL_SAVE_FIGURES=DIR` set, every figure is also saved as DIR/NAME.png.

# %% Install bigvl when it is missing (a Colab runtime); inside a checkout, install that checkout.
import importlib
import importlib.util
import os
import pathlib
import subprocess
import sys

BIGVL_GIT = os.environ.get("BIGVL_GIT", "git+https://github.com/OWNER/bigvl.git")  # set to the repository URL
if importlib.util.find_spec("bigvl") is None:
    checkout = next((p for p in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents)
                     if (p / "pyproject.toml").is_file() and (p / "bigvl" / "__init__.py").is_file()), None)
    accelerator = []  # jax's own wheels for the runtime's accelerator
    if os.path.exists("/dev/nvidia0"):
        accelerator = ["jax[cuda12]"]
    elif os.path.exists("/dev/accel0") or "TPU_NAME" in os.environ or "COLAB_TPU_ADDR" in os.environ:
        accelerator = ["jax[tpu]"]
    target = ["-e", str(checkout)] if checkout else [BIGVL_GIT]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *target, *accelerator], check=True)
    if checkout:
        sys.path.insert(0, str(checkout))  # an editable install is seen by new processes only
    importlib.invalidate_caches()

import jax  # noqa: E402
import numpy as np  # noqa: E402

import bigvl  # noqa: E402
import bigvl.plots as plots  # noqa: E402

print("bigvl", bigvl.__version__, "| jax", jax.__version__, "|", len(jax.devices()), "devices:", jax.devices())

# %% [markdown]
# ## A small synthetic world
#
# 3,000 training images at 64 px (1–4 shapes each), plus held-out splits for zero-shot
# classification (30 colour × shape classes), retrieval (with where each object is) and hard
# negatives, and a sentencepiece tokenizer. Built once (about 15 s), then reused.

# %%
from bigvl.data.world import ensure_world  # noqa: E402
from bigvl.evaluators.splits import load_split  # noqa: E402

WORK = pathlib.Path(os.environ.get("BIGVL_QUICKSTART_DIR", "bigvl_quickstart")).absolute()
world = ensure_world(WORK / "world", seed=0, num_train=3000, num_train_shards=2, num_zeroshot=300,
                     num_retrieval=200, num_hard_negatives=50, image_size=64)
print(sorted(p.name for p in world.iterdir()))

# %% [markdown]
# ## Look at it: web alt-text beside the synthetic captions
#
# The alt-text is what the web gives (often one object, sometimes a wrong colour, sometimes
# boilerplate); the short synthetic caption names every object and a relation; the long one
# (first two of its 4–8 sentences shown) describes each object, its size and position. Caption strategies
# choose between them per step.

# %%
train_images, train_records = load_split(str(world / "train-00000-of-00002.array_record"), 64)
shown = range(8)
fig = plots.image_grid(
    train_images[list(shown)],
    [f"alt: {train_records[i]['alt_text']}\nshort: {train_records[i]['captions']['short']}\n"
     f"long: {'. '.join(train_records[i]['captions']['long'].split('. ')[:2])}. ..." for i in shown], width=34)
plots.save_figure(fig, "world")
fig

# %% [markdown]
# ## Train a small CLIP for about a minute
#
# A config is plain Python: start from the schema `bigvl.config.base_config()` (every key with
# its default) and change values. The mesh `{"data": -1}` spreads the batch over every device
# `jax.devices()` shows (CPU, GPU or TPU). Caption strategy `mix`: per example, the synthetic
# caption with probability 0.5, else the alt-text. Training runs in a thread; the cell redraws
# the loss from `metrics.jsonl` while it runs (the same run resumes if interrupted and re-run).

# %%
import json  # noqa: E402
import threading  # noqa: E402

from bigvl.config import base_config, validate  # noqa: E402
from bigvl.train.loop import train_and_evaluate  # noqa: E402


def small_config(steps: int, width: int = 64, depth: int = 2):
    c = base_config()
    c.total_steps, c.batch_size, c.log_steps, c.ckpt_steps, c.eval_steps = steps, 64, 10, steps, 0
    c.progress_bar, c.log_example_ids = False, False
    c.mesh.data = -1  # every device
    c.data.train_paths = [str(world / "train-*.array_record")]
    c.data.tokenizer = str(world / "tokenizer.model")
    c.data.caption_strategy, c.data.mix_p = "mix", 0.5
    c.model.image.update(variant="custom", image_size=64, patch_size=8, width=width, depth=depth, num_heads=4,
                         mlp_dim=4 * width, pool="gap")
    c.model.text.update(variant="custom", vocab_size=1024, context_length=32, width=width, depth=depth,
                        num_heads=4, mlp_dim=4 * width)
    c.model.embed_dim = width
    c.optim.lr, c.optim.warmup_steps, c.optim.weight_decay = 3e-3, 20, 0.05
    c.evals.batch_size = 64
    c.evals.zeroshot.update(split=str(world / "zeroshot.array_record"),
                            classes=str(world / "zeroshot_classes.json"))
    c.evals.retrieval.split = str(world / "retrieval.array_record")
    c.evals.pointing.split = c.evals.retrieval.split  # its records say where each object is
    return c


def train(config, workdir, keys=("loss",)):
    """Trains in a thread while the cell redraws `keys` (metrics.jsonl); re-raises the run's error, if any."""
    validate(config)  # a wrong key or value: one line, before anything compiles
    failure = []

    def target():
        try:
            train_and_evaluate(config, str(workdir))
        except BaseException as e:  # shown in the cell below
            failure.append(e)

    thread = threading.Thread(target=target)
    thread.start()
    fig = plots.live_curves(str(workdir), thread.is_alive, every_s=3.0, keys=keys)
    thread.join()
    if failure:
        raise failure[0]
    return fig


clip_dir = WORK / "clip"
fig = train(small_config(steps=150), clip_dir)
plots.save_figure(fig, "clip_loss")
fig

# %% Results of the final evaluation (held-out splits) beside chance
with open(clip_dir / "final_metrics.json") as f:
    final = json.load(f)
num_classes = len(json.loads((world / "zeroshot_classes.json").read_text())["classnames"])
chance = {"zeroshot/top1": 1 / num_classes, "retrieval/t2i_r1": 1 / 200, "retrieval/i2t_r1": 1 / 200,
          "pointing/accuracy": final["pointing/chance"]}
for key, c in chance.items():
    print(f"{key:20s} {final[key]:.3f}   (chance {c:.3f})")
print("RESULT " + json.dumps({"zeroshot_top1": final["zeroshot/top1"], "zeroshot_chance": chance["zeroshot/top1"]}))

# %% [markdown]
# ## Zero-shot classification
#
# `bigvl.load(workdir)` restores a run's config and params (onto all devices). Class names
# go through prompt templates; the probabilities use the run's own learned temperature.
# After a minute the model knows colours but hardly shapes: the five classes of the right
# colour share the probability (top-1 ≈ 1/5 within the colour). This world has the default
# scene style, whose captions a shape-blind model can match (docs/results/world_study.md); the demo,
# `configs/demo.py`, builds a world whose captions need shape and learns it.

# %%
run = bigvl.load(str(clip_dir))
classes = json.loads((world / "zeroshot_classes.json").read_text())
zs_images, zs_records = load_split(str(world / "zeroshot.array_record"), 64)
pick = np.arange(5)
labels, probs = bigvl.zero_shot_classify(run, zs_images[pick], classes["classnames"], classes["templates"])
fig = plots.probability_bars(zs_images[pick], probs, classes["classnames"], top=5,
                             true=[zs_records[i]["extras"]["label"] for i in pick])
plots.save_figure(fig, "zero_shot")
fig

# %% [markdown]
# ## Text → image retrieval
#
# Each query against the 200 held-out retrieval images: the five best, with their cosines.

# %%
ret_images, ret_records = load_split(str(world / "retrieval.array_record"), 64)
queries = ["a red circle", "a blue square above a yellow star"]
top, scores = bigvl.retrieve(run, queries, ret_images, k=5)
fig = plots.image_grid(
    ret_images[top.ravel()],
    [f"{queries[q]!r} #{r + 1} ({scores[q, r]:.2f})\n{ret_records[top[q, r]]['captions']['short']}"
     for q in range(len(queries)) for r in range(5)], ncols=5, width=28)
plots.save_figure(fig, "retrieval")
fig

# %% [markdown]
# ## Where does the model look for "a red circle"?
#
# `bigvl.patch_similarity` gives the cosine of every patch embedding (the image tower's patch
# tokens through the same projection as the pooled embedding) with a text: an 8 × 8 map
# over a 64 px image with 8 px patches; the dashed circle is where the red circle really is.
# The pointing game in the evaluation above scores how often the argmax falls inside it; after a
# minute of training the map is still noisy away from the object.

# %%
query = "a red circle"


def the_only_red_object(record):  # the red circle, beside objects of other colours
    texts = [g["text"] for g in record["extras"]["regions"]]
    return query in texts and len(texts) > 1 and sum(t.startswith("a red") for t in texts) == 1


index = next(i for i, r in enumerate(ret_records) if the_only_red_object(r))
region = next(g for g in ret_records[index]["extras"]["regions"] if g["text"] == query)
maps = bigvl.patch_similarity(run, ret_images[index][None], query)
fig = plots.similarity_heatmap(ret_images[index], maps[0], title=f"cosine(patch, {query!r})",
                               region=(region["x"], region["y"], region["radius"]))
plots.save_figure(fig, "heatmap")
print(ret_records[index]["captions"]["short"])
fig

# %% [markdown]
# ## Captions from a small CoCa
#
# CoCa adds a caption decoder (cross-attention to the image tokens) to the two towers; loss =
# 1 · contrastive + 2 · captioning. Same world, same config helper, `model.kind = "coca"`,
# trained on the short synthetic captions (the curve shows the total and both terms).
# `bigvl.caption` decodes greedily (also `method="beam"` or `"sample"`); the held-out CIDEr-D and
# BLEU-4 of its greedy captions print below the figure.

# %%
coca_config = small_config(steps=150)
coca_config.data.caption_strategy, coca_config.data.caption_field = "recap", "short"
coca_config.model.kind = "coca"
coca_config.model.decoder.update(depth=2, context_length=32, num_queries=16, pooler_heads=4)
for name in ("zeroshot", "retrieval", "pointing"):  # evaluate its captions only:
    coca_config.evals[name].split = ""
coca_config.evals.captioning.update(split=str(world / "retrieval.array_record"), max_length=24)  # CIDEr-D, BLEU-4
coca_dir = WORK / "coca"
fig = train(coca_config, coca_dir, keys=("loss", "contrastive_loss", "caption_loss"))
plots.save_figure(fig, "coca_loss")
fig

# %%
coca = bigvl.load(str(coca_dir))
shown = np.arange(8)
captions = bigvl.caption(coca, ret_images[shown], max_length=24)
fig = plots.image_grid(ret_images[shown], [f"CoCa: {c}\ntrue: {ret_records[i]['captions']['short']}"
                                          for c, i in zip(captions, shown)], width=30)
plots.save_figure(fig, "captions")
final = json.loads((coca_dir / "final_metrics.json").read_text())
print("held-out captions:", {k: round(v, 3) for k, v in final.items() if k.startswith("captioning/")})
fig

# %% [markdown]
# ## Out to transformers and back: a converted checkpoint
#
# `python -m bigvl.convert export --to hf` writes a two-tower run as a transformers `CLIPModel`
# directory (`from_pretrained` loads it, with a `preprocessor_config.json` saying how images are
# squared); `--to open_clip` writes open_clip's layout (`open_clip.create_model("local-dir:DIR")`),
# but open_clip tokenises with CLIP's BPE unless told a hub tokenizer, so for this run (the world's
# own sentencepiece model) bigvl refuses it without `--hf_tokenizer_name`. `import` turns such files
# into a bigvl workdir. bigvl's own choices go out as they are: tanh GELU (HF's
# `gelu_pytorch_tanh`, open_clip's `act_kwargs`), LayerNorm eps 1e-6, the sentencepiece EOS id. The
# CLIP above averages its patch tokens (`pool="gap"`), which neither library can: open_clip's ViT
# always adds a class token that every patch attends to, HF's CLIP pools that token. So this cell
# trains its twin with `pool="cls"` for 30 steps, exports it, imports the export into a new workdir
# and classifies the images above with both: the probabilities agree (max |Δ| printed).
#
# A published checkpoint comes in the same way (bigvl downloads nothing: fetch the files first,
# e.g. `huggingface-cli download openai/clip-vit-base-patch16 --local-dir clip-vit-base-patch16`):
#
# ```bash
# python -m bigvl.convert import --from hf --in clip-vit-base-patch16 --out workdirs/hf_b16
# python -m bigvl.convert import --from open_clip --in ViT-B-16-openai.safetensors \
#     --model-config ViT-B-16-quickgelu.json --tokenizer bpe_simple_vocab_16e6.txt.gz --out workdirs/openai_b16
# python -m bigvl.convert import --from big_vision --in webli_en_b16_224.npz --tokenizer spiece.model \
#     --out workdirs/siglip_b16
# ```
#
# and `bigvl.load("workdirs/hf_b16")` classifies with it as above (README: "Start from a published
# checkpoint").

# %%
twin_config = small_config(steps=30)
twin_config.model.image.pool = "cls"  # a class token: what open_clip's and HF's ViTs pool
for name in ("zeroshot", "retrieval", "pointing"):
    twin_config.evals[name].split = ""
twin_dir, exported, imported = WORK / "clip_cls", WORK / "clip_cls_hf", WORK / "clip_cls_imported"
validate(twin_config)
train_and_evaluate(twin_config, str(twin_dir))


def convert(*args):  # python -m bigvl.convert ...
    subprocess.run([sys.executable, "-m", "bigvl.convert", *map(str, args)], check=True)


convert("export", "--workdir", twin_dir, "--to", "hf", "--out", exported)
print(sorted(p.name for p in exported.iterdir()))
if not (imported / "config.json").exists():  # import never writes over a workdir
    convert("import", "--from", "hf", "--in", exported, "--tokenizer", world / "tokenizer.model", "--out", imported)
twin, back = bigvl.load(str(twin_dir)), bigvl.load(str(imported))
_, p_twin = bigvl.zero_shot_classify(twin, zs_images[pick], classes["classnames"], classes["templates"])
_, p_back = bigvl.zero_shot_classify(back, zs_images[pick], classes["classnames"], classes["templates"])
print("imported:", back.config.model.activation, back.config.model.layer_norm_eps, back.config.model.image.pool)
print("max |probability(original) - probability(exported and imported)|:",
      float(np.abs(np.asarray(p_twin) - np.asarray(p_back)).max()))
