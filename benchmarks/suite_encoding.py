"""Zero-shot encoding throughput on an ImageNet-sized suite: images/s through the real suite code path.

    python -m benchmarks.suite_encoding [--config configs/demo.py] [--num-images 50000]
        [--classes 1000] [--templates imagenet|imagenet_best] [--source-size 160] [--batch 256] [--dir DIR]

Writes a synthetic CLIP_benchmark wds suite (`--num-images` JPEGs of `--source-size` px, built
from `--distinct` rendered world scenes, labels i mod `--classes`, OpenAI's ImageNet class names
repeated to `--classes` and the 80 templates), builds the config's model with random params on
every device, then times what `python -m bigvl.evaluate --suite wds/imagenet1k` does:
`clip_benchmark_wds.load` (indexing the tars), `protocols.class_embeddings` (C × T prompts, once)
and `protocols.zero_shot` (images read lazily, decoded in threads, encoded in `--batch` chunks
sharded over the devices, scored [batch, C] at a time). One warm-up chunk compiles first.

Prints one JSON line: images_per_s (reading + decoding + encoding + scoring), decode_only_images_per_s
(reading + decoding alone, the host's share), prompts_per_s,
the largest score block held ([batch, C] float64) beside the [N, C] and [N, N] matrices a naive
evaluation would hold, and os.getloadavg() (other processes slow a shared machine down).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import tarfile
import tempfile
import time

import flax.linen as nn
import jax
import numpy as np

from bigvl.config import load_config
from bigvl.data.tokenizer import Tokenizer, train_tokenizer
from bigvl.data.world import encode_jpeg, render_scene, sample_scene
from bigvl.evaluators.suites import clip_benchmark_wds, protocols
from bigvl.evaluators.suites.table import classnames, templates
from bigvl.inference.encoder import make_encoder
from bigvl.inference.run import abstract_params
from bigvl.models import build_model, dummy_inputs
from bigvl.parallel.mesh import make_mesh, rules_from_config


def write_suite(root: str, num_images: int, num_classes: int, source_size: int, distinct: int,
                template_set: str = "imagenet", per_shard: int = 5000) -> None:
    """A CLIP_benchmark wds classification suite at ROOT (test/{i}.tar, nshards.txt, classnames, templates)."""
    rng = np.random.default_rng(0)
    jpegs = [encode_jpeg(render_scene(sample_scene(rng, int(rng.integers(1, 4))), source_size), 90)
             for _ in range(distinct)]
    os.makedirs(os.path.join(root, "test"), exist_ok=True)
    shards = range(0, num_images, per_shard)
    for s, start in enumerate(shards):
        with tarfile.open(os.path.join(root, "test", f"{s}.tar"), "w") as tar:
            for i in range(start, min(num_images, start + per_shard)):
                for ext, data in (("jpg", jpegs[i % distinct]), ("cls", str(i % num_classes).encode())):
                    info = tarfile.TarInfo(f"s{i:07d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    with open(os.path.join(root, "test", "nshards.txt"), "w") as f:
        f.write(f"{len(shards)}\n")
    names = list(classnames("imagenet"))
    names = [names[c % 1000] + ("" if c < 1000 else f" {c // 1000}") for c in range(num_classes)]
    with open(os.path.join(root, "classnames.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    with open(os.path.join(root, "zeroshot_classification_templates.txt"), "w") as f:
        f.write("\n".join(templates(template_set)) + "\n")


def build_encoder(config_path: str, batch: int, workdir: str):
    """The config's model with random params on a data mesh over every device, and a tokenizer trained on the prompts."""
    config = load_config(config_path)
    texts = [t.replace("{c}", n) for n in classnames("imagenet") for t in templates("imagenet_best")]
    vocab = min(config.model.text.vocab_size, 2048)
    tokenizer = Tokenizer(train_tokenizer(texts, os.path.join(workdir, "tok"), vocab))
    with config.unlocked():
        config.model.text.vocab_size = vocab
    mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    rules = rules_from_config(config.sharding_rules)
    model = build_model(config.model)
    shardings = jax.tree.map(lambda a: a.sharding, abstract_params(model, config.model, mesh, rules))
    images, tokens = dummy_inputs(config.model)
    init = jax.jit(lambda r: model.init(r, images, tokens)["params"], out_shardings=shardings)
    params = nn.unbox(init(jax.random.key(0)))
    return make_encoder(model, params, tokenizer, config.model, mesh, rules, batch), config


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.py")
    parser.add_argument("--num-images", type=int, default=50000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--source-size", type=int, default=160, help="side of the stored JPEGs (px)")
    parser.add_argument("--distinct", type=int, default=512, help="distinct rendered scenes (cycled)")
    parser.add_argument("--templates", default="imagenet", choices=("imagenet", "imagenet_best"),
                        help="OpenAI's 80 (imagenet) or the 7-template subset")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dir", default="", help="where to write the suite (default: a temporary directory)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or os.path.join(tmp, "wds_imagenet1k")
        start = time.perf_counter()
        if not os.path.exists(os.path.join(root, "test", "nshards.txt")):
            write_suite(root, args.num_images, args.classes, args.source_size, args.distinct, args.templates)
        write_s = time.perf_counter() - start
        encoder, config = build_encoder(args.config, args.batch, tmp)

        start = time.perf_counter()
        task = clip_benchmark_wds.load(root)
        index_s = time.perf_counter() - start
        warm = protocols.load_batch(task.images, range(min(encoder.batch_size, len(task.labels))), encoder.image_size)
        start = time.perf_counter()
        jax.block_until_ready(encoder.encode_images(warm))
        encoder.encode_texts(["warm up"] * encoder.batch_size)
        compile_s = time.perf_counter() - start

        start = time.perf_counter()
        for first in range(0, len(task.labels), encoder.batch_size):  # reading + decoding alone
            protocols.load_batch(task.images, range(first, min(len(task.labels), first + encoder.batch_size)),
                                 encoder.image_size)
        decode_s = time.perf_counter() - start
        start = time.perf_counter()
        classes = protocols.class_embeddings(encoder, task.classnames, task.templates)
        text_s = time.perf_counter() - start
        start = time.perf_counter()
        metrics = protocols.zero_shot(encoder, task, "benchmark", classes=classes)
        image_s = time.perf_counter() - start

    n, c = len(task.labels), len(task.classnames)
    row = {"benchmark": "suite_encoding", "config": args.config, "image_size": encoder.image_size,
           "devices": jax.device_count(), "platform": jax.devices()[0].platform, "batch": encoder.batch_size,
           "images": n, "classes": c, "templates": len(task.templates), "source_px": args.source_size,
           "images_per_s": round(n / image_s, 1), "image_s": round(image_s, 2),
           "decode_only_images_per_s": round(n / decode_s, 1),
           "prompts_per_s": round(c * len(task.templates) / text_s, 1), "text_s": round(text_s, 2),
           "compile_s": round(compile_s, 2), "index_s": round(index_s, 2), "write_suite_s": round(write_s, 1),
           "largest_score_block_bytes": encoder.batch_size * c * 8, "n_by_c_bytes": n * c * 8,
           "n_by_n_bytes": n * n * 8, "acc1": metrics["acc1"],
           "loadavg": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
