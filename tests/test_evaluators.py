"""Evaluator metrics against naive per-query loops; one evaluation reads and encodes each split once."""
import zlib
from collections import Counter

import numpy as np
import pytest

import bigvl.evaluators.splits as splits_module
from bigvl.config import base_config
from bigvl.evaluators import captioning, chance_levels, hard_negatives, pointing, retrieval, run_evals, zero_shot
from bigvl.evaluators.hard_negatives import hard_negative_accuracy
from bigvl.evaluators.retrieval import recall_at_k
from bigvl.evaluators.zero_shot import zero_shot_accuracy


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_recall_at_k_matches_naive_loop():
    rng = np.random.default_rng(0)
    images, texts = _unit(rng.normal(size=(50, 8))), _unit(rng.normal(size=(50, 8)))
    texts[:20] = images[:20] + 0.1 * texts[:20]  # some matches are easy
    got = recall_at_k(images, texts)
    for k in (1, 5, 10):
        i2t = np.mean([i in np.argsort(-(images[i] @ texts.T))[:k] for i in range(50)])
        t2i = np.mean([j in np.argsort(-(texts[j] @ images.T))[:k] for j in range(50)])
        assert got[f"i2t_r{k}"] == i2t
        assert got[f"t2i_r{k}"] == t2i
    assert got["i2t_r1"] >= 0.4  # the 20 easy pairs are found


def test_recall_identical_embeddings_is_perfect_and_ties_count_against():
    x = _unit(np.random.default_rng(1).normal(size=(10, 4)))
    assert recall_at_k(x, x)["t2i_r1"] == 1.0
    same = np.ones((3, 4)) / 2.0  # every candidate ties: no query is retrieved at rank 1
    assert recall_at_k(same, same)["i2t_r1"] == 0.0


def test_zero_shot_accuracy_matches_naive():
    rng = np.random.default_rng(2)
    classes = _unit(rng.normal(size=(7, 16)))
    labels = rng.integers(0, 7, size=40)
    images = _unit(classes[labels] + 0.9 * rng.normal(size=(40, 16)))
    got = zero_shot_accuracy(images, labels, classes)
    top1 = np.mean([np.argmax(classes @ images[i]) == labels[i] for i in range(40)])
    top5 = np.mean([labels[i] in np.argsort(-(classes @ images[i]))[:5] for i in range(40)])
    hits = {c: [np.argmax(classes @ images[i]) == c for i in range(40) if labels[i] == c] for c in set(labels)}
    balanced = np.mean([np.mean(h) for h in hits.values()])  # sklearn's balanced_accuracy_score, by hand
    assert got == {"top1": top1, "top5": top5, "balanced_accuracy": pytest.approx(balanced, abs=1e-12)}


def test_balanced_accuracy_weighs_each_class_once():
    classes = np.eye(2, 4)  # 3 images of class 0 all right, 1 image of class 1 wrong
    got = zero_shot_accuracy(classes[[0, 0, 0, 0]], np.array([0, 0, 0, 1]), classes)
    assert got["top1"] == 0.75 and got["balanced_accuracy"] == 0.5


def test_zero_shot_below_five_classes_reports_no_top5_and_no_top5_chance(tmp_path):
    """In training, top-k with k > classes is left out (not a trivial 1.0); its chance level too, so the
    results table never pairs a chance level with a metric that was not measured."""
    import json
    classes = np.eye(3, 16)
    got = zero_shot_accuracy(classes[[0, 1, 2, 0]], np.array([0, 1, 2, 0]), classes)
    assert got == {"top1": 1.0, "balanced_accuracy": 1.0}
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"classnames": ["a", "b", "c"], "templates": ["{}"]}))
    entry = type("Entry", (), {"classes": str(path)})()
    assert zero_shot.chance(entry) == {"top1": 1 / 3, "balanced_accuracy": 1 / 3}


def test_hard_negative_accuracy_per_kind():
    image = np.array([[1.0, 0.0]])
    pos = np.array([[0.9, 0.1]])
    negs = [np.array([[0.5, 0.5], [1.0, 0.0]])]  # the second negative beats the positive
    got = hard_negative_accuracy(image, pos, negs, [["swap_colour", "swap_relation"]])
    assert got == {"accuracy": 0.5, "accuracy_swap_colour": 1.0, "accuracy_swap_relation": 0.0}


class _CaptionLookupEncoder:
    """Images → one-hot of their row; a text → one-hot of the record whose `field` caption it is."""
    image_size = 32

    def __init__(self, records_by_text):
        self.records_by_text, self.queries = records_by_text, []

    def encode_images(self, images):
        return np.eye(len(images), 64)

    def encode_texts(self, texts):
        self.queries.append(list(texts))
        return np.stack([np.eye(64)[self.records_by_text.get(t, 63)] for t in texts])


def test_long_caption_retrieval_queries_with_the_full_long_captions(tiny_world):
    path = str(tiny_world / "retrieval.array_record")
    _, records = splits_module.load_split(path, 32)
    by_long = {r["captions"]["long"]: i for i, r in enumerate(records)}
    encoder = _CaptionLookupEncoder(by_long)
    out = retrieval.evaluate(encoder, path, {"retrieval": "short", "long_retrieval": "long"})
    assert out["long_retrieval"]["t2i_r1"] == 1.0 and out["long_retrieval"]["i2t_r1"] == 1.0
    assert out["retrieval"]["t2i_r1"] == 0.0  # short captions are not the long ones
    assert encoder.queries[1] == [r["captions"]["long"] for r in records]
    assert all(len(q.split(". ")) >= 2 for q in encoder.queries[1])  # whole multi-sentence captions


class _FakeCaptioner:
    needs_condition = False

    def __init__(self):
        self.images = []

    def caption(self, params, images, cond, cfg):
        self.images.append(len(images))
        return ["a red circle"] * len(images)


class _PixelEncoder:
    """Deterministic stand-in for an Encoder: embeddings from pixel statistics and text hashes, calls counted."""
    image_size, params, has_patches, dim = 32, None, True, 8

    def __init__(self):
        self.image_passes = []  # (method, number of images) per call
        self.captioner = _FakeCaptioner()
        self.projection = np.random.default_rng(0).normal(size=(3, self.dim))

    def _patches(self, images):  # 2x2 grid of 16-pixel patches: mean colour, projected
        quads = images.reshape(len(images), 2, 16, 2, 16, 3).mean(axis=(2, 4)).reshape(len(images), 4, 3)
        return _unit(quads / 255.0 @ self.projection)

    def encode_images(self, images):
        self.image_passes.append(("pooled", len(images)))
        return _unit(self._patches(images).mean(axis=1))

    def encode_images_with_patches(self, images):
        self.image_passes.append(("with_patches", len(images)))
        patches = self._patches(images)
        return _unit(patches.mean(axis=1)), patches

    def encode_patches(self, images):
        return self.encode_images_with_patches(images)[1]

    def encode_texts(self, texts):
        return np.stack([_unit(np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim)) for t in texts])


def test_one_evaluation_reads_and_encodes_each_split_once(tiny_world, monkeypatch):
    evals = base_config().evals
    split = {name: str(tiny_world / f"{name}.array_record") for name in ("zeroshot", "retrieval", "hard_negatives")}
    evals.zeroshot.update(split=split["zeroshot"], classes=str(tiny_world / "zeroshot_classes.json"))
    evals.retrieval.split = split["retrieval"]
    evals.long_retrieval = dict(type="retrieval", split=split["retrieval"], field="long")
    evals.hard_negatives.split = split["hard_negatives"]
    evals.pointing.split = evals.captioning.split = split["retrieval"]
    reads = Counter()
    read_records = splits_module.read_records

    def counting_read(path, *args, **kwargs):
        reads[path] += 1
        return read_records(path, *args, **kwargs)

    monkeypatch.setattr(splits_module, "read_records", counting_read)
    encoder = _PixelEncoder()
    metrics = run_evals(encoder, evals)
    assert reads == Counter(split.values())  # each split read once, the retrieval split by four evaluators
    sizes = {"zeroshot": 60, "retrieval": 40, "hard_negatives": 40}  # TINY_WORLD
    assert sorted(encoder.image_passes) == sorted(
        [("pooled", sizes["zeroshot"]), ("pooled", sizes["hard_negatives"]), ("with_patches", sizes["retrieval"])])
    assert encoder.captioner.images == [sizes["retrieval"]]

    # the same numbers as each evaluator run on its own (each reading its split again)
    alone = {**{f"zeroshot/{k}": v for k, v in zero_shot.evaluate(
                 encoder, split["zeroshot"], evals.zeroshot.classes).items()},
             **{f"{name}/{k}": v for name, values in retrieval.evaluate(
                 encoder, split["retrieval"], {"retrieval": "short", "long_retrieval": "long"}).items()
                for k, v in values.items()},
             **{f"hard_negatives/{k}": v for k, v in hard_negatives.evaluate(encoder, split["hard_negatives"]).items()},
             **{f"pointing/{k}": v for k, v in pointing.evaluate(encoder, split["retrieval"]).items()},
             **{f"captioning/{k}": v for k, v in captioning.evaluate(encoder, split["retrieval"]).items()}}
    assert metrics == alone and list(metrics) == list(alone)  # the entries run in the table's order
    assert reads[split["retrieval"]] == 1 + 3  # standalone: retrieval, pointing, captioning read it again


def test_a_split_cache_belongs_to_one_encoder(tiny_world):
    with pytest.raises(ValueError, match="another encoder"):
        retrieval.evaluate(_PixelEncoder(), str(tiny_world / "retrieval.array_record"), {"retrieval": "short"},
                           splits_module.SplitCache(_PixelEncoder()))


class _CollapsedEncoder:
    """A collapsed model: every image, patch and text maps to the same unit vector (a generic one,
    so <image, text> is a sum of unequal products, computed by any route)."""
    image_size, params, has_patches, dim, grid = 32, None, True, 16, 4

    def __init__(self):
        self.vector = _unit(np.random.default_rng(3).normal(size=self.dim)).astype(np.float32)

    def encode_images(self, images):
        return np.tile(self.vector, (len(images), 1))

    def encode_images_with_patches(self, images):
        return self.encode_images(images), np.tile(self.vector, (len(images), self.grid ** 2, 1))

    def encode_patches(self, images):
        return self.encode_images_with_patches(images)[1]

    def encode_texts(self, texts):
        return np.tile(self.vector, (len(texts), 1))


def test_a_collapsed_encoder_scores_at_most_chance_in_every_evaluator(tiny_world):
    """Ties count against the query everywhere: a model that cannot tell anything apart learns nothing."""
    split = {name: str(tiny_world / f"{name}.array_record") for name in ("zeroshot", "retrieval", "hard_negatives")}
    evals = base_config().evals
    evals.zeroshot.update(split=split["zeroshot"], classes=str(tiny_world / "zeroshot_classes.json"))
    evals.retrieval.split = split["retrieval"]
    evals.hard_negatives.split = split["hard_negatives"]
    chance = chance_levels(evals)
    assert chance["retrieval/t2i_r1"] == 1 / 40  # TINY_WORLD num_retrieval
    encoder = _CollapsedEncoder()
    got = {f"zeroshot/{k}": v for k, v in zero_shot.evaluate(encoder, split["zeroshot"],
                                                               evals.zeroshot.classes).items()}
    got.update({f"retrieval/{k}": v for k, v in retrieval.evaluate(
        encoder, split["retrieval"], {"retrieval": "short"})["retrieval"].items()})
    got.update({f"hard_negatives/{k}": v for k, v in hard_negatives.evaluate(encoder, split["hard_negatives"]).items()})
    assert set(chance) <= set(got) and "zeroshot/top1" in chance
    for name, level in chance.items():
        assert got[name] <= level, (name, got[name], level)
    assert all(v == 0.0 for k, v in got.items() if k.startswith("hard_negatives/"))  # every tie is a miss
    point = pointing.evaluate(encoder, split["retrieval"])
    assert point["queries"] > 40 and point["accuracy"] <= point["chance"]


def test_zero_shot_ties_count_against_the_query():
    classes = _unit(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))  # classes 0 and 1 tie on every image
    images = _unit(np.array([[1.0, 0.1], [0.1, 1.0]]))
    got = zero_shot_accuracy(images, np.array([0, 2]), classes, ks=(1, 2))
    assert got == {"top1": 0.5, "top2": 1.0, "balanced_accuracy": 0.5}  # image 0 ties with class 1: rank 1, found only within 2


def test_a_hard_negative_equal_to_the_positive_is_a_miss():
    rng = np.random.default_rng(4)
    image, text = _unit(rng.normal(size=(1, 24))), _unit(rng.normal(size=(1, 24)))
    got = hard_negative_accuracy(image, text, [np.concatenate([text, -text])], [["same", "opposite"]])
    assert got == {"accuracy": 0.5, "accuracy_same": 0.0, "accuracy_opposite": 1.0}


def test_collapsed_hard_negatives_are_misses_however_the_scores_round():
    """Positive and negatives equal to the image's vector: every pair ties, whatever float rounding
    the positive's and the negatives' scores get (a dot product and a matrix product round differently)."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = _unit(rng.normal(size=(1, 64))).astype(np.float32)
        assert hard_negative_accuracy(v, v, [np.tile(v, (5, 1))], [["same"] * 5])["accuracy"] == 0.0


def test_entries_of_any_name_run_by_their_type_and_name_their_metrics(tiny_world):
    evals = base_config().evals
    split = str(tiny_world / "retrieval.array_record")
    evals.heldout_zs = dict(type="zeroshot", split=str(tiny_world / "zeroshot.array_record"),
                            classes=str(tiny_world / "zeroshot_classes.json"))
    evals.long_queries = dict(type="retrieval", split=split, field="long")  # `field` left out: its default
    evals.short_queries = dict(type="retrieval", split=split)
    encoder = _PixelEncoder()
    metrics = run_evals(encoder, evals)
    alone = retrieval.evaluate(encoder, split, {"long": "long", "short": "short"})
    assert {k: v for k, v in metrics.items() if k.startswith("long_queries/")} == \
        {f"long_queries/{k}": v for k, v in alone["long"].items()}
    assert {k: v for k, v in metrics.items() if k.startswith("short_queries/")} == \
        {f"short_queries/{k}": v for k, v in alone["short"].items()}
    assert metrics["heldout_zs/top1"] == zero_shot.evaluate(
        encoder, evals.heldout_zs.split, evals.heldout_zs.classes)["top1"]
    assert {k.split("/")[0] for k in metrics} == {"heldout_zs", "long_queries", "short_queries"}  # split "": off


def test_an_old_run_config_with_flat_evals_keys_evaluates_with_the_same_metric_names(tiny_world, tmp_path):
    """tests/fixtures/config_flat_evals.json: the demo's config.json as written before evals were entries."""
    import json
    import pathlib

    from bigvl.config import load_config, load_config_json, validate
    from bigvl.configs.demo import use_world
    saved = json.loads((pathlib.Path(__file__).parent / "fixtures" / "config_flat_evals.json").read_text())
    assert saved["evals"]["long_retrieval_field"] == "long"  # the old shape
    old_dir = saved["world"]["dir"]
    text = json.dumps(saved).replace(old_dir, str(tiny_world))
    (tmp_path / "config.json").write_text(text)
    old = load_config_json(str(tmp_path))
    validate(old)
    new = load_config("demo")
    use_world(new, str(tiny_world))
    new.evals.long_retrieval.split = new.evals.retrieval.split
    assert old.evals.to_dict() == new.evals.to_dict()
    encoder = _PixelEncoder()
    metrics = run_evals(encoder, old.evals)
    assert metrics == run_evals(_PixelEncoder(), new.evals)
    assert {k.split("/")[0] for k in metrics} == {"zeroshot", "retrieval", "long_retrieval", "hard_negatives",
                                                   "pointing"}
    assert {"zeroshot/top1", "retrieval/t2i_r1", "long_retrieval/i2t_r1", "hard_negatives/accuracy",
            "pointing/accuracy"} <= set(metrics)
