"""Benchmark suites: every layout built here from the synthetic world's images, with known answers.

An oracle encoder scores 1.0, a collapsed one 0 (≤ chance: ties count against), a shuffled one
chance; the same split exported to every layout gives identical numbers; the metric formulas
are re-derived in numpy as CLIP_benchmark writes them.
"""
import json

import numpy as np
import pytest

from bigvl.evaluators.suites import (
    SUITES,
    clip_benchmark_wds,
    image_folder,
    karpathy,
    load_suite,
    long_captions,
    parse_suites,
    protocols,
    run_suites,
    tfds_suites,
    write_result,
)
from bigvl.evaluators.suites.compositional import SUGARCREPE_CATEGORIES, load_aro, load_sugarcrepe
from bigvl.evaluators.suites.protocols import run_task
from bigvl.evaluators.suites.tasks import SuiteFilesMissing, fill_template
from tests.helpers.suite_fixtures import (
    LookupEncoder,
    pixel_key,
    world_examples,
    write_aro,
    write_dci,
    write_docci,
    write_image_folder,
    write_karpathy,
    write_sugarcrepe,
    write_tfds,
    write_urban1k,
    write_wds,
)

TEMPLATES = ["a photo of a {c}.", "itap of the {c}."]


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --- metric formulas against CLIP_benchmark's, re-derived in numpy -------------------------------------

def test_metrics_match_clip_benchmark_formulas():
    rng = np.random.default_rng(0)
    classes, images = _unit(rng.normal(size=(7, 16))), _unit(rng.normal(size=(50, 16)))
    labels = rng.integers(0, 7, size=50)
    images[:20] = _unit(classes[labels[:20]] + 0.3 * images[:20])
    logits = images @ classes.T
    top = np.argsort(-logits, axis=1)
    pred = top[:, 0]
    recalls = [np.mean(pred[labels == c] == c) for c in np.unique(labels)]  # sklearn balanced_accuracy_score
    scores = protocols.similarities(images, classes)
    got = protocols.classification_metrics(protocols.rank_of_true(scores, scores[np.arange(50), labels]), labels, 7)
    assert got == pytest.approx({"acc1": np.mean(pred == labels), "acc5": np.mean((top[:, :5] == labels[:, None]).any(1)),
                                 "mean_per_class_recall": np.mean(recalls)}, abs=1e-12)

    # retrieval: CLIP_benchmark's recall_at_k with a positive_pairs matrix [texts, images]
    img, txt = _unit(rng.normal(size=(12, 16))), _unit(rng.normal(size=(30, 16)))
    text_image = rng.integers(0, 12, size=30)
    text_image[:12] = np.arange(12)  # every image has a caption
    txt[:15] = _unit(img[text_image[:15]] + 0.5 * txt[:15])
    positive = text_image[:, None] == np.arange(12)[None, :]
    sims = txt @ img.T

    def recall_at_k(scores, positive_pairs, k):  # CLIP_benchmark: a query hits when any positive is in its top k
        topk = np.argsort(-scores, axis=1)[:, :k]
        return np.mean(np.take_along_axis(positive_pairs, topk, axis=1).any(axis=1))

    got = protocols.retrieval_metrics(*protocols.multi_caption_ranks(img, txt, text_image, chunk=5))
    for k in (1, 5, 10):
        assert got[f"image_retrieval_recall@{k}"] == pytest.approx(recall_at_k(sims, positive, k))
        assert got[f"text_retrieval_recall@{k}"] == pytest.approx(recall_at_k(sims.T, positive.T, k))


# --- fixtures in every layout ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    """60 world images of 30 colour×shape classes in wds, ImageFolder and TFDS layouts."""
    from bigvl.data.world import class_names
    root = tmp_path_factory.mktemp("cls")
    examples = world_examples("zeroshot", 60)
    images, labels, names = [e["image"] for e in examples], [e["extras"]["label"] for e in examples], class_names()
    tasks = {
        "wds": clip_benchmark_wds.load(write_wds(str(root / "wds"), images, [str(x) for x in labels], "cls",
                                                 classnames=names, templates=TEMPLATES)),
        "folder": image_folder.load(write_image_folder(str(root / "folder"), images, labels, names), TEMPLATES),
        "tfds": tfds_suites.load_classification("bigvl_test_cls", "test", write_tfds(
            str(root / "tfds"), "bigvl_test_cls", "test", [{"image": i, "label": x} for i, x in zip(images, labels)],
            num_classes=len(names)), names, TEMPLATES),
    }
    image_index = {pixel_key(i): x for i, x in zip(images, labels)}
    text_index = {fill_template(t, n): c for c, n in enumerate(names) for t in TEMPLATES}
    return tasks, image_index, text_index, len(names)


def test_zero_shot_oracle_collapsed_shuffled_and_layouts_agree(classification):
    tasks, image_index, text_index, num_classes = classification
    oracle = LookupEncoder(image_index, text_index, num_classes)
    noisy = LookupEncoder(image_index, text_index, num_classes, noise=0.35)
    collapsed = LookupEncoder(image_index, text_index, num_classes, mode="collapsed")
    results = {name: protocols.zero_shot(noisy, task) for name, task in tasks.items()}
    assert results["wds"] == results["folder"] == results["tfds"]
    assert 0.2 < results["wds"]["acc1"] < 0.95  # a number between chance and the oracle, same in every layout
    for task in tasks.values():
        assert protocols.zero_shot(oracle, task) == {"acc1": 1.0, "acc5": 1.0, "mean_per_class_recall": 1.0}
        assert protocols.zero_shot(collapsed, task)["acc1"] == 0.0  # all classes tie: ≤ chance
    shuffled = [protocols.zero_shot(LookupEncoder(image_index, text_index, num_classes, mode="shuffled",
                                                  shuffle_seed=s), tasks["wds"])["acc1"] for s in range(30)]
    assert np.mean(shuffled) == pytest.approx(1 / num_classes, abs=0.02)  # chance; std of the mean ≈ 0.004


def test_zero_shot_scores_in_chunks_never_n_by_n(classification, monkeypatch):
    tasks, image_index, text_index, num_classes = classification
    shapes, similarities = [], protocols.similarities
    monkeypatch.setattr(protocols, "similarities", lambda a, b: shapes.append((len(a), len(b))) or similarities(a, b))
    encoder = LookupEncoder(image_index, text_index, num_classes)
    protocols.zero_shot(encoder, tasks["wds"])
    assert shapes and all(rows <= encoder.batch_size and cols == num_classes for rows, cols in shapes)
    assert max(encoder.image_batches) <= encoder.batch_size and sum(encoder.image_batches) == 60


@pytest.fixture(scope="module")
def retrieval(tmp_path_factory):
    """24 world scenes with 2 captions each (short, long) in wds, Karpathy (COCO, Flickr) and TFDS layouts."""
    root = tmp_path_factory.mktemp("ret")
    seen, examples = set(), []
    for e in world_examples("retrieval", 40):
        texts = (e["captions"]["short"], e["captions"]["long"])
        if not seen & set(texts) and len(examples) < 24:
            seen |= set(texts)
            examples.append(e)
    images = [e["image"] for e in examples]
    captions = [[e["captions"]["short"], e["captions"]["long"]] for e in examples]
    tasks = {
        "wds": clip_benchmark_wds.load(write_wds(str(root / "wds"), images, ["\n".join(c) for c in captions], "txt")),
        "coco": karpathy.load(str(root / "coco" / "dataset_coco.json"), str(root / "coco"))
        if write_karpathy(str(root / "coco"), images, captions) else None,
        "flickr": karpathy.load(str(root / "f" / "dataset_flickr30k.json"), str(root / "f" / "flickr30k-images"))
        if write_karpathy(str(root / "f"), images, captions, flickr=True) else None,
        "tfds": tfds_suites.load_captions("bigvl_test_captions", "test", write_tfds(
            str(root / "tfds"), "bigvl_test_captions", "test",
            [{"image": i, "captions": c} for i, c in zip(images, captions)])),
    }
    long = [c[1] for c in captions]
    long_tasks = {"urban1k": long_captions.load_urban1k(write_urban1k(str(root / "u"), images, long)),
                  "docci": long_captions.load_docci(write_docci(str(root / "d"), images, long)),
                  "dci": long_captions.load_dci(write_dci(str(root / "dci"), images, long))}
    image_index = {pixel_key(i): n for n, i in enumerate(images)}
    text_index = {t: n for n, caps in enumerate(captions) for t in caps}
    return tasks, long_tasks, image_index, text_index, len(images)


def test_retrieval_oracle_collapsed_shuffled_and_layouts_agree(retrieval):
    tasks, long_tasks, image_index, text_index, n = retrieval
    assert [len(c) for c in tasks["wds"].captions] == [2] * n
    noisy = LookupEncoder(image_index, text_index, n, noise=0.25)
    for group in (tasks, long_tasks):
        results = [protocols.retrieval(noisy, task) for task in group.values()]
        assert all(r == results[0] for r in results), results
        assert 0.1 < results[0]["image_retrieval_recall@1"] < 1.0
        for task in group.values():
            oracle = protocols.retrieval(LookupEncoder(image_index, text_index, n), task)
            assert set(oracle.values()) == {1.0}
            collapsed = protocols.retrieval(LookupEncoder(image_index, text_index, n, mode="collapsed"), task)
            assert collapsed["image_retrieval_recall@1"] == collapsed["text_retrieval_recall@1"] == 0.0
            assert collapsed["image_retrieval_recall@10"] <= 10 / n
    shuffled = [protocols.retrieval(LookupEncoder(image_index, text_index, n, noise=0.25, mode="shuffled",
                                                  shuffle_seed=s),
                                    tasks["wds"])["image_retrieval_recall@5"] for s in range(20)]
    assert np.mean(shuffled) == pytest.approx(5 / n, abs=0.05)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """World hard negatives as SugarCrepe (kinds spread over the 7 categories) and ARO (bbox = whole image)."""
    root = tmp_path_factory.mktemp("pairs")
    examples = world_examples("hard_negatives", 28)
    images = [e["image"] for e in examples]
    pos = [e["extras"]["positive"] for e in examples]
    neg = [e["extras"]["negatives"][0] for e in examples]
    kinds = [SUGARCREPE_CATEGORIES[i % 7] for i in range(len(examples))]
    sugar = load_sugarcrepe(write_sugarcrepe(str(root / "s"), images, pos, neg, kinds), str(root / "s" / "val2017"))
    aro = load_aro(write_aro(str(root / "a"), images, pos, neg, "relation"), str(root / "a" / "images"), "relation")
    image_index = {pixel_key(i): n for n, i in enumerate(images)}
    text_index = {**{t: len(images) for t in neg}, **{t: n for n, t in enumerate(pos)}}
    return {"sugar_crepe": sugar, "aro": aro}, image_index, text_index, len(images) + 1


def test_pairs_accuracy_oracle_collapsed_shuffled(pairs):
    tasks, image_index, text_index, dim = pairs
    for name, task in tasks.items():
        oracle = protocols.pairs(LookupEncoder(image_index, text_index, dim), task)
        assert set(oracle.values()) == {1.0}
        assert protocols.pairs(LookupEncoder(image_index, text_index, dim, mode="collapsed"), task)["acc"] == 0.0
    assert set(protocols.pairs(LookupEncoder(image_index, text_index, dim), tasks["sugar_crepe"])) == \
        {"acc"} | {f"acc_{c}" for c in SUGARCREPE_CATEGORIES}
    # shuffled: image i is another image, so its true and false captions are both unrelated: half by chance
    noisy = [protocols.pairs(LookupEncoder(image_index, text_index, dim, noise=0.3, mode="shuffled", shuffle_seed=s),
                             tasks["aro"])["acc"] for s in range(20)]
    assert np.mean(noisy) == pytest.approx(0.5, abs=0.1)


def _planted_aro(data_dir, which, groups, seed=0):
    """ARO files under DATA_DIR/aro: groups = [(kind, pairs, right)]; the first `right` pairs of each kind are
    won by the lookup encoder (true caption on the image), the rest lost (false caption on the image).
    Returns (encoder, {kind: (pairs, right)})."""
    examples = world_examples("hard_negatives", 4, seed=seed)
    distinct = [e["image"] for e in examples]
    images, pos, neg, kinds, image_index, text_index = [], [], [], [], {}, {}
    for kind, count, right in groups:
        for j in range(count):
            i = len(images)
            images.append(distinct[i % len(distinct)])
            image_index[pixel_key(images[-1])] = i % len(distinct)
            pos.append(f"{which} true {i}")
            neg.append(f"{which} false {i}")
            on_image, elsewhere = i % len(distinct), len(distinct)
            text_index[pos[-1]], text_index[neg[-1]] = (on_image, elsewhere) if j < right else (elsewhere, on_image)
            kinds.append(kind)
    write_aro(str(data_dir / "aro"), images, pos, neg, which, kinds)
    return LookupEncoder(image_index, text_index, len(distinct) + 1), {k: (c, r) for k, c, r in groups}


def test_aro_relation_is_the_macro_average_over_relations_as_its_authors_report(tmp_path):
    """VG-Relation: the mean over relations of each relation's accuracy, leaving out the relations the ARO
    authors list as symmetric ("next to" is one); a relation with few pairs counts like any other (their
    VG_Relation.evaluate_scores keeps every relation). The pair-weighted mean is acc_micro."""
    groups = [("on", 40, 30), ("left of", 10, 2), ("next to", 30, 0)]
    encoder, planted = _planted_aro(tmp_path, "relation", groups)
    task, metrics = run_suites(encoder, "aro/vg_relation", str(tmp_path))["aro/vg_relation"]
    macro = np.mean([planted["on"][1] / planted["on"][0], planted["left of"][1] / planted["left of"][0]])
    micro = sum(r for _, _, r in groups) / sum(c for _, c, _ in groups)
    assert task == "image_caption_selection"
    assert metrics["acc"] == pytest.approx(macro) and macro == pytest.approx(0.475)
    assert metrics["acc_micro"] == pytest.approx(micro) and micro == pytest.approx(0.4)
    assert metrics["acc_on"] == 0.75 and metrics["acc_next to"] == 0.0


def test_aro_attribution_is_the_macro_average_over_pairs_with_at_least_25(tmp_path):
    """VG-Attribution: the mean over attribute pairs with ≥ 25 samples of each pair's accuracy."""
    groups = [(("red", "blue"), 40, 30), (("big", "small"), 30, 12), (("wet", "dry"), 10, 10)]
    encoder, planted = _planted_aro(tmp_path, "attribution", groups)
    task, metrics = run_suites(encoder, "aro/vg_attribution", str(tmp_path))["aro/vg_attribution"]
    macro = np.mean([r / c for c, r in planted.values() if c >= 25])  # wet_dry (10 pairs, all right) left out
    micro = sum(r for _, _, r in groups) / sum(c for _, c, _ in groups)
    assert metrics["acc"] == pytest.approx(macro) and macro == pytest.approx(0.575)
    assert metrics["acc_micro"] == pytest.approx(micro) and micro == pytest.approx(0.65)
    assert metrics["acc_red_blue"] == 0.75 and metrics["acc_wet_dry"] == 1.0


def test_acc5_below_five_classes_is_nan_as_clip_benchmark_writes_it(tmp_path):
    """CLIP_benchmark (metrics/zeroshot_classification.py): acc5 = float("nan") with fewer than 5 classes,
    written by json.dump as a bare NaN token; the table prints nan."""
    from bigvl.evaluators.suites.results import format_table
    examples = world_examples("zeroshot", 12)
    images, labels, names = [e["image"] for e in examples], [i % 3 for i in range(12)], ["cat", "dog", "cow"]
    write_wds(str(tmp_path / "data" / "wds_cifar10"), images, [str(x) for x in labels], "cls",
              classnames=names, templates=TEMPLATES)
    text_index = {fill_template(t, n): c for c, n in enumerate(names) for t in TEMPLATES}
    encoder = LookupEncoder({pixel_key(i): x for i, x in zip(images, labels)}, text_index, 3)
    results = run_suites(encoder, "wds/cifar10", str(tmp_path / "data"))
    task, metrics = results["wds/cifar10"]
    assert metrics["acc1"] == 1.0 and metrics["mean_per_class_recall"] == 1.0
    assert np.isnan(metrics["acc5"])
    path = write_result(str(tmp_path / "run"), "wds/cifar10", task, metrics)
    with open(path) as f:
        text = f.read()
    assert '"acc5": NaN' in text and np.isnan(json.loads(text)["metrics"]["acc5"])
    assert "acc5=nan" in format_table(results)


# --- the suite table, missing files, results JSON ----------------------------------------------------------

def test_unknown_suite_names_the_nearest():
    with pytest.raises(ValueError, match="did you mean 'karpathy/coco'"):
        parse_suites("karpathy/cocoo")
    assert parse_suites("urban1k, sugar_crepe") == ["urban1k", "sugar_crepe"]


@pytest.mark.parametrize("name", sorted(SUITES))
def test_missing_files_are_one_line_naming_the_file_and_layout(name, tmp_path):
    with pytest.raises(SuiteFilesMissing) as error:
        load_suite(name, str(tmp_path))
    message = str(error.value)
    assert "\n" not in message and str(tmp_path) in message and "layout" in message


def test_run_suites_through_the_table_writes_clip_benchmark_json(retrieval, pairs, tmp_path):
    tasks, long_tasks, image_index, text_index, n = retrieval
    data_dir = tmp_path / "data"
    images = [tasks["wds"].images.read(i) for i in range(n)]
    write_urban1k(str(data_dir / "Urban1k"), images, [c[1] for c in tasks["wds"].captions])
    results = run_suites(LookupEncoder(image_index, text_index, n), "urban1k", str(data_dir))
    task, metrics = results["urban1k"]
    assert task == "zeroshot_retrieval" and metrics["image_retrieval_recall@1"] == 1.0
    path = write_result(str(tmp_path / "run"), "urban1k", task, metrics, step=7)
    with open(path) as f:
        saved = json.load(f)
    assert path.endswith("eval/urban1k.json")
    assert {k: saved[k] for k in ("dataset", "task", "metrics", "language", "step")} == {
        "dataset": "urban1k", "task": "zeroshot_retrieval", "metrics": metrics, "language": "en", "step": 7}
    assert run_task(LookupEncoder(image_index, text_index, n), long_tasks["docci"], "docci")[0] == "zeroshot_retrieval"


def test_shipped_class_names_and_templates():
    from bigvl.evaluators.suites.table import classnames, imagenet_subset, templates
    assert len(classnames("imagenet")) == 1000 and classnames("imagenet")[:2] == ("tench", "goldfish")
    assert len(templates("imagenet")) == 80 and len(set(templates("imagenet"))) == 80
    assert set(templates("imagenet_best")) <= set(templates("imagenet")) and len(templates("imagenet_best")) == 7
    assert [len(classnames(n)) for n in ("cifar10", "cifar100", "pets")] == [10, 100, 37]
    a, r = imagenet_subset("imagenet_a"), imagenet_subset("imagenet_r")
    assert len(a) == len(r) == 200 and a[:3] == [6, 11, 13] and r[:3] == [1, 2, 4]


def test_evaluate_cli_rejects_an_unknown_suite_before_loading(tmp_path, capsys):
    from bigvl.evaluate import main
    assert main(["--workdir", str(tmp_path / "nowhere"), "--suite", "wds/imagenet1kk"]) == 2
    assert "did you mean 'wds/imagenet1k'" in capsys.readouterr().err


def test_config_names_suites_for_in_training_evaluation():
    from bigvl.config import ConfigError, base_config, validate
    c = base_config()
    c.data.train_paths, c.data.tokenizer = ["x"], "t"
    c.evals.suites, c.evals.data_dir = "wds/imagenet1k, urban1k", "/data"
    validate(c)
    c.evals.suites = "wds/imagenet1k,urbn1k"
    with pytest.raises(ConfigError, match="evals.suites.*did you mean 'urban1k'"):
        validate(c)


def test_run_evals_includes_the_config_suites(retrieval, tmp_path):
    from bigvl.config import base_config
    from bigvl.evaluators import run_evals
    tasks, _, image_index, text_index, n = retrieval
    images = [tasks["wds"].images.read(i) for i in range(n)]
    write_docci(str(tmp_path / "docci"), images, [c[1] for c in tasks["wds"].captions])
    evals = base_config().evals
    evals.suites, evals.data_dir = "docci", str(tmp_path)
    metrics = run_evals(LookupEncoder(image_index, text_index, n), evals)
    assert metrics["docci/image_retrieval_recall@1"] == metrics["docci/text_retrieval_recall@10"] == 1.0


@pytest.mark.slow
def test_evaluate_cli_runs_suites_on_a_trained_run(tiny_run, tmp_path, capsys):
    """`python -m bigvl.evaluate --workdir RUN --suite ... --data_dir ...` on a real checkpoint."""
    import shutil

    from bigvl.data.world import class_names
    from bigvl.evaluate import main
    run = shutil.copytree(tiny_run, tmp_path / "run")  # the shared run stays as other tests expect it
    examples = world_examples("zeroshot", 40)
    write_wds(str(tmp_path / "wds_imagenet1k"), [e["image"] for e in examples],
              [str(e["extras"]["label"]) for e in examples], "cls", classnames=class_names(), templates=TEMPLATES)
    write_urban1k(str(tmp_path / "Urban1k"), [e["image"] for e in examples], [e["captions"]["long"] for e in examples])
    assert main(["--workdir", str(run), "--suite", "wds/imagenet1k,urban1k", "--data_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "wds/imagenet1k" in out and "acc1=" in out and "image_retrieval_recall@1=" in out
    for name, task in (("wds_imagenet1k", "zeroshot_classification"), ("urban1k", "zeroshot_retrieval")):
        with open(run / "eval" / f"{name}.json") as f:
            saved = json.load(f)
        assert saved["task"] == task and saved["step"] == 6
        assert all(0.0 <= v <= 1.0 for v in saved["metrics"].values())
    assert main(["--workdir", str(run), "--suite", "docci", "--data_dir", str(tmp_path)]) == 2
    assert "docci_descriptions.jsonlines not found; expected layout" in capsys.readouterr().err


def test_imagenet_real_style_label_sets(classification, tmp_path):
    """ReaL accuracy: top-1 is right when it is any of the image's labels; images with no label are left out."""
    tasks, image_index, text_index, num_classes = classification
    task = tasks["wds"]
    images = [task.images.read(i) for i in range(len(task.labels))]
    sets = [[] if i % 10 == 0 else sorted({int(x), (int(x) + 1) % num_classes} if i % 2 else {int(x)})
            for i, x in enumerate(task.labels)]
    write_tfds(str(tmp_path), "bigvl_test_real", "validation",
               [{"image": im, "real_label": s} for im, s in zip(images, sets)], num_classes=num_classes)
    real = tfds_suites.load_real("validation", str(tmp_path), task.classnames, task.templates, name="bigvl_test_real")
    assert protocols.zero_shot(LookupEncoder(image_index, text_index, num_classes), real) == {"acc1": 1.0, "acc5": 1.0}
    shifted = {k: (v + 1) % num_classes for k, v in image_index.items()}  # predicts label + 1: right on odd images
    got = protocols.zero_shot(LookupEncoder(shifted, text_index, num_classes), real)["acc1"]
    kept = [i for i, s in enumerate(sets) if s]
    assert got == pytest.approx(np.mean([(int(task.labels[i]) + 1) % num_classes in sets[i] for i in kept]))
    assert protocols.zero_shot(LookupEncoder(image_index, text_index, num_classes, mode="collapsed"), real)["acc1"] == 0


@pytest.mark.slow
def test_suite_encoding_benchmark_runs_the_real_path(tmp_path):
    from benchmarks import suite_encoding
    row = suite_encoding.main(["--num-images", "96", "--classes", "12", "--templates", "imagenet_best",
                               "--batch", "32", "--distinct", "8", "--dir", str(tmp_path / "wds")])
    assert row["images"] == 96 and row["classes"] == 12 and row["templates"] == 7 and row["images_per_s"] > 0
    assert row["largest_score_block_bytes"] == row["batch"] * 12 * 8


def test_each_host_decodes_only_the_rows_it_feeds(classification, monkeypatch):
    """With 2 processes, host 1 reads rows [8, 16) of each 16-row chunk (run_in_chunks feeds it those); the rest stay 0."""
    tasks, image_index, text_index, num_classes = classification
    images, reads = tasks["wds"].images, []

    class Counting:
        def __len__(self):
            return 20

        def read(self, i):
            reads.append(i)
            return images.read(i)

    monkeypatch.setattr(protocols.jax, "process_count", lambda: 2)
    monkeypatch.setattr(protocols.jax, "process_index", lambda: 1)
    batches = []
    encoder = LookupEncoder(image_index, text_index, num_classes)
    encoder.encode_images = lambda b: batches.append(b.copy()) or np.zeros((len(b), 4), np.float32)
    list(protocols.iter_image_embeds(encoder, Counting()))
    assert sorted(reads) == list(range(8, 16)) + [19]  # chunk 2 (rows 16..19) is all host 0's: host 1 reads one filler
    assert [b.shape[0] for b in batches] == [16, 16] and not batches[0][:8].any() and batches[0][8:].any(axis=(1, 2, 3)).all()


def test_class_embeddings_average_the_prompts_then_renormalise():
    """A class embedding is the mean of its prompts' unit embeddings, renormalised (CLIP's zero-shot
    classifier, CLIP_benchmark's build_zero_shot_classifier), each class from its own prompts: written
    here in numpy over an encoder that maps each prompt to a fixed random unit vector."""
    from bigvl.evaluators.suites.protocols import class_embeddings
    rng = np.random.default_rng(0)
    table = {}

    class Encoder:
        def encode_texts(self, texts):
            out = []
            for t in texts:
                v = table.setdefault(t, rng.normal(size=8))
                out.append(v / np.linalg.norm(v))
            return np.asarray(out, np.float32)
    classes, templates = ["cat", "dog", "red fox"], ["a photo of a {c}.", "a {c}", "{}!"]
    got = class_embeddings(Encoder(), classes, templates)
    for c, name in enumerate(classes):
        units = [table[t.replace("{c}", name).replace("{}", name)] for t in templates]
        mean = np.mean([u / np.linalg.norm(u) for u in units], axis=0)
        np.testing.assert_allclose(got[c], mean / np.linalg.norm(mean), atol=1e-6)
        assert np.linalg.norm(mean) < 0.99  # renormalising matters here
