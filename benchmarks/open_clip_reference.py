"""The open_clip side of the side-by-side benchmarks. Runs in its own venv (torch + open_clip_torch,
no bigvl, no JAX); `benchmarks.open_clip_compare` starts it and talks to it.

    python open_clip_reference.py train-step --arch B16 --batch 8
        prints {"ready": true, "num_params": ...}, then for every line "step" on stdin runs
        one training step and prints {"seconds": ..., "loss": ...}; "quit" ends it.
    python open_clip_reference.py profile --arch S64 --batch 64 --steps 3
        torch.profiler over 3 steps; prints {"step_s": ..., "ops": [{name, self_cpu_s, count}]}.
    python open_clip_reference.py input-pipeline --dir DIR [--repeats 3]
        times open_clip's training transform + tokenizer over DIR/*.jpg (files read into
        memory first), one process, one thread; prints {"pairs_per_s": ...}.

The training step is open_clip's own (its training loop, reduced to one batch): CLIP model
from `open_clip.model.CLIP` with the architecture of `ARCHS`, `open_clip.ClipLoss`, AdamW with
open_clip's weight-decay exclusion (gains, biases, logit_scale), global-norm clipping at 1.0,
the logit-scale clamp after the step; float32, eager, `torch.set_num_threads(len(affinity))`
(one intra-op thread per core this process may run on, as XLA does on the bigvl side).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time

import open_clip
import torch
from PIL import Image
from torch.profiler import ProfilerActivity, record_function  # record_function: scopes, free outside a profiler
from torch.profiler import profile as torch_profile

# open_clip model configs (same keys as open_clip/model_configs/*.json).
ARCHS = {
    # open_clip ViT-B-16 (149.6M params)
    "B16": dict(embed_dim=512,
                vision_cfg=dict(image_size=224, layers=12, width=768, patch_size=16),
                text_cfg=dict(context_length=77, vocab_size=49408, width=512, heads=8, layers=12)),
    # a small CLIP for 2-core machines: 64 px, patch 8, width 256, 6 layers per tower
    "S64": dict(embed_dim=256,
                vision_cfg=dict(image_size=64, layers=6, width=256, patch_size=8, head_width=64),
                text_cfg=dict(context_length=32, vocab_size=4096, width=256, heads=4, layers=6)),
}


def build(arch: str, batch: int, seed: int = 0):
    """(model, optimizer, loss, images [B,3,S,S] float32, texts int64 [B,L]) for `arch`."""
    torch.manual_seed(seed)
    cfg = ARCHS[arch]
    model = open_clip.model.CLIP(**cfg, output_dict=True)
    model.train()
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    params = list(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in params if exclude(n, p) and p.requires_grad], "weight_decay": 0.0},
         {"params": [p for n, p in params if not exclude(n, p) and p.requires_grad], "weight_decay": 0.2}],
        lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
    size, text = cfg["vision_cfg"]["image_size"], cfg["text_cfg"]
    images = torch.randn(batch, 3, size, size)
    texts = torch.randint(1, text["vocab_size"] - 1, (batch, text["context_length"]))
    texts[:, -1] = text["vocab_size"] - 1  # an EOT token (the highest id) for argmax pooling
    return model, optimizer, open_clip.ClipLoss(), images, texts


def train_step_server(arch: str, batch: int) -> None:
    """Serves training steps on stdin/stdout (see the module docstring)."""
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # the cores the parent pinned (inherited)
    model, optimizer, loss_fn, images, texts = build(arch, batch)
    num_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"ready": True, "num_params": num_params, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "affinity": sorted(os.sched_getaffinity(0))}),
          flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        start = time.perf_counter()
        loss = train_step(model, optimizer, loss_fn, images, texts)
        print(json.dumps({"seconds": time.perf_counter() - start, "loss": loss.item()}), flush=True)


def train_step(model, optimizer, loss_fn, images, texts):
    """One open_clip training step; returns the loss (detached)."""
    optimizer.zero_grad(set_to_none=True)
    out = model(images, texts)
    with record_function("loss"):
        loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
    loss.backward()
    loss = loss.detach()
    with record_function("optimizer"):
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
    return loss


def profile(arch: str, batch: int, steps: int) -> None:
    """torch.profiler over `steps` training steps after one untimed step; prints {"step_s": median
    of the profiled steps, "ops": [{name, scope, self_cpu_s, count}] (totals over the steps; scope
    "loss" / "optimizer" / "" from the enclosing record_function)}."""
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    model, optimizer, loss_fn, images, texts = build(arch, batch)
    train_step(model, optimizer, loss_fn, images, texts)
    times = []
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            start = time.perf_counter()
            train_step(model, optimizer, loss_fn, images, texts)
            times.append(time.perf_counter() - start)
    totals = {}  # (scope, op) → [self seconds, calls]; scope: the enclosing "loss"/"optimizer" or ""
    for e in prof.events():
        scope, parent = "", e.cpu_parent
        while parent is not None:
            scope = parent.name if parent.name in ("loss", "optimizer") else scope
            parent = parent.cpu_parent
        row = totals.setdefault((scope, e.name), [0.0, 0])
        row[0] += e.self_cpu_time_total / 1e6
        row[1] += 1
    ops = [{"name": name, "scope": scope, "self_cpu_s": t, "count": n}
           for (scope, name), (t, n) in totals.items() if t > 0]
    print(json.dumps({"step_s": sorted(times)[len(times) // 2], "ops": ops, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}), flush=True)


def input_pipeline(directory: str, repeats: int, size: int) -> None:
    """Times open_clip's train transform (RandomResizedCrop scale (0.9, 1), bicubic, ToTensor,
    Normalize) + its CLIP BPE tokenizer over the JPEGs and captions of `directory`."""
    torch.set_num_threads(1)
    with open(os.path.join(directory, "captions.jsonl")) as f:
        items = [json.loads(line) for line in f]
    data = [(open(os.path.join(directory, it["file"]), "rb").read(), it["caption"]) for it in items]
    transform = open_clip.image_transform(size, is_train=True)
    tokenizer = open_clip.get_tokenizer("ViT-B-16")
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for image_bytes, caption in data:
            image = transform(Image.open(io.BytesIO(image_bytes)))
            tokens = tokenizer([caption])
        best = min(best, time.perf_counter() - start)
    print(json.dumps({"pairs_per_s": len(data) / best, "num": len(data), "image_shape": list(image.shape),
                      "image_dtype": str(image.dtype), "tokens_shape": list(tokens.shape),
                      "transform": repr(transform).replace("\n", " "), "threads": torch.get_num_threads()}),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    step = sub.add_parser("train-step")
    step.add_argument("--arch", choices=sorted(ARCHS), default="B16")
    step.add_argument("--batch", type=int, default=8)
    prof = sub.add_parser("profile")
    prof.add_argument("--arch", choices=sorted(ARCHS), default="S64")
    prof.add_argument("--batch", type=int, default=64)
    prof.add_argument("--steps", type=int, default=3)
    pipe = sub.add_parser("input-pipeline")
    pipe.add_argument("--dir", required=True)
    pipe.add_argument("--repeats", type=int, default=3)
    pipe.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    if args.command == "train-step":
        train_step_server(args.arch, args.batch)
    elif args.command == "profile":
        profile(args.arch, args.batch, args.steps)
    else:
        input_pipeline(args.dir, args.repeats, args.size)


if __name__ == "__main__":
    main()
