"""Benchmark fixtures in every layout the suite readers know, built from the synthetic world's images.

Each writer takes the same images (JPEG bytes) and labels / captions, so one split exported to
CLIP_benchmark wds, ImageFolder, TFDS (ArrayRecord, written without TensorFlow), Karpathy JSON,
Urban1k, DOCCI, DCI, SugarCrepe and ARO must give the same numbers. `LookupEncoder` is an
encoder whose answers are known: it recognises each image by its pixels and each text by a
table, so an oracle scores 1.0, a collapsed one 0 and a shuffled one chance.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import zlib

import numpy as np

from bigvl.data.image_ops import center_resize
from bigvl.data.world import generate_split, world_params
from bigvl.evaluators.suites.compositional import SUGARCREPE_CATEGORIES
from bigvl.evaluators.suites.images import to_pil

IMAGE_SIZE = 32


def world_examples(split: str, count: int, seed: int = 0) -> list[dict]:
    """The first `count` examples of a world split at 32 px (JPEG bytes in example["image"])."""
    params = world_params(seed=seed, image_size=IMAGE_SIZE)
    return [example for example, _ in generate_split(split, params, count)]


def pixel_key(image_bytes: bytes) -> bytes:
    """What the readers hand the encoder for these bytes (decoded, centre-resized), as a hashable key."""
    return center_resize(to_pil(image_bytes), IMAGE_SIZE).tobytes()


class LookupEncoder:
    """Images → a one-hot of `image_index[pixels]`, texts → a one-hot of `text_index[text]`, plus optional
    deterministic noise (a function of the content only) so that metrics land between 0 and 1.

    mode: "oracle" (as given), "collapsed" (every embedding equal), or "shuffled" (images get a
    random other index and the noise a new draw: `shuffle_seed`).
    """

    image_size, batch_size = IMAGE_SIZE, 16

    def __init__(self, image_index: dict[bytes, int], text_index: dict[str, int], dim: int,
                 noise: float = 0.0, mode: str = "oracle", shuffle_seed: int = 0):
        self.image_index, self.text_index, self.dim, self.noise, self.mode = image_index, text_index, dim, noise, mode
        self.shuffle_seed = shuffle_seed
        self.permutation = np.random.default_rng(shuffle_seed).permutation(dim)
        self.image_batches = []

    def _embed(self, index: int, key: bytes) -> np.ndarray:
        e = np.eye(self.dim)[index]
        if self.noise:
            seed = [zlib.crc32(key), self.shuffle_seed] if self.mode == "shuffled" else zlib.crc32(key)
            e = e + self.noise * np.random.default_rng(seed).normal(size=self.dim)
        if self.mode == "collapsed":
            e = np.ones(self.dim)
        return e / np.linalg.norm(e)

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        self.image_batches.append(len(images))
        out = []
        for image in images:
            key = np.ascontiguousarray(image).tobytes()
            index = self.image_index[key]
            out.append(self._embed(self.permutation[index] if self.mode == "shuffled" else index, key))
        return np.stack(out).astype(np.float32)

    def encode_texts(self, texts) -> np.ndarray:
        return np.stack([self._embed(self.text_index[t], t.encode()) for t in texts]).astype(np.float32)


# --- writers ---------------------------------------------------------------------------------------

def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_wds(root: str, images: list[bytes], payloads: list[str], ext: str, per_shard: int = 7,
              classnames: list[str] | None = None, templates: list[str] | None = None) -> str:
    """CLIP_benchmark wds: ROOT/test/{i}.tar with sNNNNNNN.jpg + .cls / .txt, nshards.txt, class files."""
    os.makedirs(os.path.join(root, "test"), exist_ok=True)
    shards = [range(s, min(len(images), s + per_shard)) for s in range(0, len(images), per_shard)]
    for i, rows in enumerate(shards):
        with tarfile.open(os.path.join(root, "test", f"{i}.tar"), "w") as tar:
            for r in rows:
                _add(tar, f"s{r:07d}.jpg", images[r])
                _add(tar, f"s{r:07d}.{ext}", payloads[r].encode())
    with open(os.path.join(root, "test", "nshards.txt"), "w") as f:
        f.write(f"{len(shards)}\n")
    if classnames is not None:
        with open(os.path.join(root, "classnames.txt"), "w") as f:
            f.write("\n".join(classnames) + "\n")
        with open(os.path.join(root, "zeroshot_classification_templates.txt"), "w") as f:
            f.write("\n".join(templates) + "\n")
    return root


def write_image_folder(root: str, images: list[bytes], labels: list[int], classnames: list[str]) -> str:
    """ROOT/<class dir>/<i>.jpg, dirs named c000.. in class order, with ROOT/classnames.txt."""
    for i, (image, label) in enumerate(zip(images, labels)):
        d = os.path.join(root, f"c{label:03d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{i:05d}.jpg"), "wb") as f:
            f.write(image)
    for c in range(len(classnames)):  # a class without images keeps its directory
        os.makedirs(os.path.join(root, f"c{c:03d}"), exist_ok=True)
    with open(os.path.join(root, "classnames.txt"), "w") as f:
        f.write("\n".join(classnames) + "\n")
    return root


def write_tfds(data_dir: str, name: str, split: str, examples: list[dict], num_classes: int | None = None) -> str:
    """A TFDS dataset `name` in ArrayRecord format (written with tfds, no TensorFlow): examples are
    {"image": bytes, "label": int} or {"image": bytes, "real_label": [int]} (num_classes given), or
    {"image": bytes, "captions": [str]}."""
    import tensorflow_datasets as tfds  # local: the optional `tfds` extra, and slow to import

    if examples and "real_label" in examples[0]:  # ImageNet-ReaL-like: a set of labels per image
        features = {"image": tfds.features.Image(),
                    "real_label": tfds.features.Sequence(tfds.features.ClassLabel(num_classes=num_classes))}
        rows = [{"image": io.BytesIO(e["image"]), "real_label": e["real_label"]} for e in examples]
    elif num_classes is not None:
        features = {"image": tfds.features.Image(), "label": tfds.features.ClassLabel(num_classes=num_classes)}
        rows = [{"image": io.BytesIO(e["image"]), "label": e["label"]} for e in examples]
    else:
        features = {"image": tfds.features.Image(), "captions": tfds.features.Sequence({"text": tfds.features.Text()})}
        rows = [{"image": io.BytesIO(e["image"]), "captions": {"text": e["captions"]}} for e in examples]

    dataset_name = name
    with tfds.core.registered.skip_registration():
        class FixtureBuilder(tfds.core.GeneratorBasedBuilder):
            # A one-part module name: for a dotted one (tests.helpers...) tfds looks for checksum files
            # inside the package, through importlib_resources, which this fixture needs neither of.
            __module__ = "suite_fixtures"
            name = dataset_name
            VERSION = tfds.core.Version("1.0.0")

            def _info(self):
                return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

            def _split_generators(self, dl_manager):
                return {split: self._generate_examples()}

            def _generate_examples(self):
                for i, row in enumerate(rows):
                    yield i, row
    FixtureBuilder(data_dir=data_dir, file_format="array_record").download_and_prepare()
    return data_dir


def write_files(directory: str, images: list[bytes], names: list[str]) -> None:
    os.makedirs(directory, exist_ok=True)
    for image, name in zip(images, names):
        with open(os.path.join(directory, name), "wb") as f:
            f.write(image)


def write_karpathy(root: str, images: list[bytes], captions: list[list[str]], flickr: bool = False) -> str:
    """dataset_coco.json (filepath val2014) or dataset_flickr30k.json, plus two train entries to skip."""
    names = [f"{i:012d}.jpg" for i in range(len(images))]
    write_files(os.path.join(root, "flickr30k-images" if flickr else "val2014"), images, names)
    entries = [{"filename": "train.jpg", "split": "train", "sentences": [{"raw": "not this"}]}] * 2
    for name, caps in zip(names, captions):
        entry = {"filename": name, "split": "test", "sentences": [{"raw": c} for c in caps]}
        if not flickr:
            entry["filepath"] = "val2014"
        entries.append(entry)
    with open(os.path.join(root, "dataset_flickr30k.json" if flickr else "dataset_coco.json"), "w") as f:
        json.dump({"images": entries, "dataset": "flickr30k" if flickr else "coco"}, f)
    return root


def write_urban1k(root: str, images: list[bytes], captions: list[str]) -> str:
    write_files(os.path.join(root, "image"), images, [f"{i}.jpg" for i in range(len(images))])
    os.makedirs(os.path.join(root, "caption"), exist_ok=True)
    for i, caption in enumerate(captions):
        with open(os.path.join(root, "caption", f"{i}.txt"), "w") as f:
            f.write(caption + "\n")
    return root


def write_docci(root: str, images: list[bytes], captions: list[str]) -> str:
    names = [f"test_{i:05d}.jpg" for i in range(len(images))]
    write_files(os.path.join(root, "images"), images, names)
    with open(os.path.join(root, "docci_descriptions.jsonlines"), "w") as f:
        f.write(json.dumps({"example_id": "train_0", "split": "train", "image_file": "x.jpg",
                            "description": "skipped"}) + "\n")
        for i, (name, caption) in enumerate(zip(names, captions)):
            f.write(json.dumps({"example_id": f"test_{i}", "split": "test", "image_file": name,
                                "description": caption}) + "\n")
    return root


def write_dci(root: str, images: list[bytes], captions: list[str]) -> str:
    """annotations/<i>.json whose short_caption + " " + extra_caption is the caption (split at the first '. ')."""
    names = [f"sa_{i}.jpg" for i in range(len(images))]
    write_files(os.path.join(root, "photos"), images, names)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for i, (name, caption) in enumerate(zip(names, captions)):
        short, _, extra = caption.partition(". ")
        entry = {"image": name, "short_caption": short + "." if extra else short, "extra_caption": extra,
                 "mask_data": {}}
        with open(os.path.join(root, "annotations", f"{i:05d}.json"), "w") as f:
            json.dump(entry, f)
    return root


def write_sugarcrepe(root: str, images: list[bytes], positives: list[str], negatives: list[str],
                     kinds: list[str]) -> str:
    """<kind>.json per kind ({idx: {filename, caption, negative_caption}}), images in ROOT/val2017."""
    names = [f"{i:012d}.jpg" for i in range(len(images))]
    write_files(os.path.join(root, "val2017"), images, names)
    for category in SUGARCREPE_CATEGORIES:
        rows = {str(i): {"filename": names[i], "caption": positives[i], "negative_caption": negatives[i]}
                for i in range(len(images)) if kinds[i] == category}
        with open(os.path.join(root, f"{category}.json"), "w") as f:
            json.dump(rows, f)
    return root


def write_aro(root: str, images: list[bytes], positives: list[str], negatives: list[str], which: str,
              kinds: list | None = None) -> str:
    """visual_genome_<which>.json with each bbox the whole image (so the crop is the image).

    kinds: per row the relation_name (which="relation") or the (attribute, attribute) pair
    ("attribution", written as "attributes"); default: "on" / "left of" or ("red", "small") / ("small", "red")
    alternating.
    """
    names = [f"{i}.jpg" for i in range(len(images))]
    write_files(os.path.join(root, "images"), images, names)
    if kinds is None:
        two = ("on", "left of") if which == "relation" else (("red", "small"), ("small", "red"))
        kinds = [two[i % 2] for i in range(len(images))]
    rows = [{"image_path": n, "bbox_x": 0, "bbox_y": 0, "bbox_w": IMAGE_SIZE, "bbox_h": IMAGE_SIZE,
             "true_caption": p, "false_caption": q,
             **({"relation_name": k} if which == "relation" else {"attributes": list(k)})}
            for n, p, q, k in zip(names, positives, negatives, kinds)]
    with open(os.path.join(root, f"visual_genome_{which}.json"), "w") as f:
        json.dump(rows, f)
    return root
