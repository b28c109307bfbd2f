"""CLIP scores stored in extras (bigvl/inference/caption_scores.py) and the data.min_caption_score fallback."""
import glob
import os

import msgpack
import numpy as np
import pytest

from bigvl.data.caption_strategies import SCORE_KEY, Dual, Mix, score_fallback
from bigvl.data.records import decode_example, encode_example, read_records, write_records


@pytest.fixture(scope="module")
def tiny_clip(tiny_world):
    """A Run of a randomly initialised tiny two-tower model (tests/helpers/tiny.py's) with the world's tokenizer."""
    import flax.linen as nn
    import jax

    from bigvl.data.tokenizer import Tokenizer
    from bigvl.inference.encoder import make_encoder
    from bigvl.inference.run import Run
    from bigvl.models import build_model
    from bigvl.parallel.mesh import DEFAULT_RULES, make_mesh
    from tests.helpers.tiny import tiny_config
    config = tiny_config(tiny_world)
    model = build_model(config.model)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(1), np.zeros((1, 32, 32, 3), np.uint8),
                                          np.zeros((1, 16), np.int32))["params"])
    mesh = make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    encoder = make_encoder(model, params, Tokenizer(config.data.tokenizer), config.model, mesh, tuple(DEFAULT_RULES), 16)
    return Run(config=config, step=0, model=model, params=params, encoder=encoder)


def test_scores_are_the_runs_own_cosines(tiny_clip, tiny_world, tmp_path):
    import bigvl.api
    from bigvl.data.image_ops import decode_image
    from bigvl.inference.caption_scores import MANIFEST, score_captions
    src = tmp_path / "src"
    src.mkdir()
    records = read_records(sorted(glob.glob(str(tiny_world / "train-*.array_record")))[0])[:12]
    first = decode_example(records[0])
    records[0] = encode_example({**first, "extras": {SCORE_KEY: {"old": 0.5}}})  # kept beside the new scores
    write_records(src / "a.array_record", records[:6])
    write_records(src / "b.array_record", records[6:])
    manifest = score_captions(tiny_clip, sorted(glob.glob(str(src / "*"))), str(tmp_path / "out"), ["alt", "short"])
    out = [decode_example(d) for n in ("a", "b") for d in read_records(str(tmp_path / "out" / f"{n}.array_record"))]
    images = np.stack([np.asarray(decode_image(r["image"])) for r in out])
    image_embeds = bigvl.api.encode_images(tiny_clip, images).astype(np.float64)
    for field, text_of in (("alt", lambda r: r["alt_text"]), ("short", lambda r: r["captions"]["short"])):
        text_embeds = bigvl.api.encode_texts(tiny_clip, [text_of(r) for r in out]).astype(np.float64)
        want = np.sum(image_embeds * text_embeds, axis=1)
        got = np.array([r["extras"][SCORE_KEY][field] for r in out])
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert manifest["mean_score"][field] == pytest.approx(want.mean(), abs=1e-5)
    assert out[0]["extras"][SCORE_KEY]["old"] == 0.5
    assert set(out[1]["extras"][SCORE_KEY]) == {"alt", "short"}  # only the asked fields
    for a, b in zip(records, [d for n in ("a", "b") for d in read_records(str(tmp_path / "out" / f"{n}.array_record"))]):
        ra, rb = msgpack.unpackb(a, raw=False), msgpack.unpackb(b, raw=False)
        assert {k: v for k, v in ra.items() if k != "extras"} == {k: v for k, v in rb.items() if k != "extras"}
    assert manifest["records"] == 12 and os.path.exists(tmp_path / "out" / MANIFEST)


def test_restart_with_other_fields_or_model_is_refused(tiny_clip, tiny_world, tmp_path):
    """The shared resume check (bigvl/inference/shard_transform.py): another --fields or another model
    into the same --out stops with one line naming it and writes nothing; the same options resume."""
    from bigvl.inference.caption_scores import score_captions
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    records = read_records(sorted(glob.glob(str(tiny_world / "train-*.array_record")))[0])[:8]
    write_records(src / "a.array_record", records[:4])
    write_records(src / "b.array_record", records[4:])
    paths = sorted(glob.glob(str(src / "*")))
    score_captions(tiny_clip, paths[:1], str(out), ["alt", "short"])

    def tree():
        return {os.path.relpath(os.path.join(d, n), out): open(os.path.join(d, n), "rb").read()
                for d, _, names in os.walk(out) for n in names}
    before = tree()
    with pytest.raises(ValueError) as error:
        score_captions(tiny_clip, paths, str(out), ["alt"])
    assert "\n" not in str(error.value) and "fields ['alt', 'short'] → ['alt']" in str(error.value), str(error.value)
    other = tiny_clip.__class__(**{**vars(tiny_clip), "step": 3})
    with pytest.raises(ValueError, match="model.step 0 → 3"):
        score_captions(other, paths, str(out), ["alt", "short"])
    assert tree() == before
    manifest = score_captions(tiny_clip, paths, str(out), ["alt", "short"])
    assert manifest["records"] == 8
    assert tree()["a.array_record"] == before["a.array_record"]


def _record(gen_score, alt="red circle clipart", gen="a red circle above a blue square"):
    return {"alt_text": alt, "captions": {"gen": gen, "short": "a red circle"},
            "extras": {SCORE_KEY: {"alt": 0.1, "gen": gen_score}}}


def test_score_fallback_hand_cases():
    r = _record(0.2)
    assert score_fallback([r["captions"]["gen"]], r, 0.25) == (["red circle clipart"], 1)
    assert score_fallback([r["captions"]["gen"]], r, 0.2) == ([r["captions"]["gen"]], 0)  # not below
    assert score_fallback(["red circle clipart"], r, 0.9) == (["red circle clipart"], 0)  # the alt-text itself
    assert score_fallback(["a red circle"], r, 0.9) == (["a red circle"], 0)  # `short` has no stored score
    assert score_fallback(["a red circle above"], r, 0.9) == (["a red circle above"], 0)  # not a whole caption
    assert score_fallback([r["captions"]["gen"]], {**r, "extras": {}}, 0.9) == ([r["captions"]["gen"]], 0)
    rng = np.random.default_rng(0)
    assert score_fallback(Dual(field="gen")(r["alt_text"], r["captions"], rng), r, 0.25) == (
        ["red circle clipart", "red circle clipart"], 1)
    texts = Mix(p=1.0, field="gen")(r["alt_text"], r["captions"], rng)
    assert score_fallback(texts, _record(0.3), 0.25) == ([r["captions"]["gen"]], 0)


def test_pipeline_falls_back_and_counts(tiny_world):
    from bigvl.config import base_config
    from bigvl.data.pipeline import ExampleProcessor
    from bigvl.data.tokenizer import Tokenizer
    data = base_config().data
    data.caption_strategy, data.caption_field, data.min_caption_score = "recap", "gen", 0.25
    tokenizer_path = str(tiny_world / "tokenizer.model")
    processor = ExampleProcessor(data, 32, 16, tokenizer_path)
    world = decode_example(read_records(sorted(glob.glob(str(tiny_world / "train-*.array_record")))[0])[0])
    tok = Tokenizer(tokenizer_path)
    for score, want, count in ((0.2, "red circle clipart", 1), (0.4, "a red circle above a blue square", 1),
                               (0.1, "red circle clipart", 2)):
        example = processor((0, encode_example({**_record(score), "id": "x", "image": world["image"]})),
                            np.random.default_rng(0))
        np.testing.assert_array_equal(example["tokens"], tok.encode([want], 16))
        assert processor.score_fallbacks == count
    data.min_caption_score = 0.0  # off
    example = ExampleProcessor(data, 32, 16, tokenizer_path)(
        (0, encode_example({**_record(0.0), "id": "x", "image": world["image"]})), np.random.default_rng(0))
    np.testing.assert_array_equal(example["tokens"], tok.encode(["a red circle above a blue square"], 16))
