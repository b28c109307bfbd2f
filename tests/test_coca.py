"""CoCa and CLIPS models: shapes, causal masking, CLS pooling, conditioning, loss vs a naive reference,
and a few training steps through bigvl.train.loop."""
import json

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from bigvl.losses.config_defaults import loss_config_defaults
from bigvl.losses.objective import Objective
from bigvl.models import build_model
from bigvl.models.decoder import shift_right
from tests.helpers.captioner_models import (
    BATCH,
    DEC_LENGTH,
    LENGTH,
    VOCAB,
    build,
    jitted_apply,
    random_tokens,
    tiny_model_config,
)


def _memory(apply, params, images, cond=None):
    return apply({"params": params}, images, cond, method="caption_memory")


@pytest.mark.parametrize("kind", ["coca", "clips"])
def test_output_shapes(kind):
    model, params, images = build(kind)
    apply = jitted_apply(model)
    rng = np.random.default_rng(1)
    tokens = random_tokens(rng, 2 * BATCH, LENGTH)  # T = 2 texts per image
    target = random_tokens(rng, BATCH, DEC_LENGTH)
    out = apply({"params": params}, images, tokens, target)
    assert out["image_embeds"].shape == (BATCH, 16) and out["text_embeds"].shape == (2 * BATCH, 16)
    np.testing.assert_allclose(np.linalg.norm(out["image_embeds"], axis=-1), 1.0, rtol=1e-5)
    assert out["caption_nll"].shape == out["caption_tokens"].shape == (BATCH,)
    np.testing.assert_array_equal(out["caption_tokens"], (target != 0).sum(axis=1))
    assert np.all(np.asarray(out["caption_nll"]) > 0)
    if kind == "coca":
        assert params["caption_pooler"]["query"].shape == (4, 32)
        assert params["contrastive_pooler"]["query"].shape == (1, 32)


@pytest.mark.parametrize("kind", ["coca", "clips"])
def test_changing_a_future_token_leaves_earlier_logits(kind):
    model, params, images = build(kind)
    apply = jitted_apply(model)
    rng = np.random.default_rng(2)
    cond = random_tokens(rng, BATCH, LENGTH)
    memory, lengths = _memory(apply, params, images, cond)
    tokens = shift_right(jnp.asarray(random_tokens(rng, BATCH, DEC_LENGTH, min_len=DEC_LENGTH - 1)), 2)
    logits = apply({"params": params}, tokens, memory, lengths, method="caption_logits")
    j = 6
    changed = tokens.at[:, j].set((tokens[:, j] + 7) % VOCAB)
    logits2 = apply({"params": params}, changed, memory, lengths, method="caption_logits")
    np.testing.assert_allclose(logits2[:, :j], logits[:, :j], atol=1e-5)
    assert np.abs(np.asarray(logits2[:, j:] - logits[:, j:])).max() > 1e-3


def test_coca_text_embedding_is_the_cls_output_and_ignores_padding():
    model, params, images = build("coca")
    apply = jitted_apply(model)
    tokens = random_tokens(np.random.default_rng(3), BATCH, 8)
    short = apply({"params": params}, tokens, method="encode_text")
    padded = np.pad(tokens, ((0, 0), (0, LENGTH - 8)))
    np.testing.assert_allclose(apply({"params": params}, padded, method="encode_text"), short, atol=1e-5)
    changed = tokens.copy()
    changed[:, 0] = (changed[:, 0] + 1) % VOCAB + 4 * (changed[:, 0] + 1 < 4)
    assert np.abs(apply({"params": params}, changed, method="encode_text") - short).max() > 1e-4


def test_clips_captioner_sees_the_alt_text_not_the_partial_caption():
    model, params, images = build("clips")
    apply = jitted_apply(model)
    rng = np.random.default_rng(4)
    tokens = random_tokens(rng, 2 * BATCH, LENGTH).reshape(BATCH, 2, LENGTH)  # [partial, alt]
    target = random_tokens(rng, BATCH, DEC_LENGTH)

    def nll(t):
        return np.asarray(apply({"params": params}, images, t.reshape(2 * BATCH, LENGTH), target)["caption_nll"])

    base = nll(tokens)
    other_partial, other_alt = tokens.copy(), tokens.copy()
    other_partial[:, 0] = random_tokens(rng, BATCH, LENGTH)
    other_alt[:, 1] = random_tokens(rng, BATCH, LENGTH)
    np.testing.assert_allclose(nll(other_partial), base, rtol=1e-6)
    assert np.abs(nll(other_alt) - base).max() > 1e-4


@pytest.mark.parametrize("kind", ["coca", "clips"])
def test_caption_loss_matches_naive_cross_entropy(kind):
    model, params, images = build(kind)
    apply = jitted_apply(model)
    rng = np.random.default_rng(5)
    tokens = random_tokens(rng, 2 * BATCH, LENGTH)
    target = random_tokens(rng, BATCH, DEC_LENGTH)
    out = apply({"params": params}, images, tokens, target)
    cond = tokens.reshape(BATCH, 2, LENGTH)[:, 1]
    memory, lengths = _memory(apply, params, images, cond)
    logits = np.asarray(apply({"params": params}, shift_right(jnp.asarray(target), 2), memory, lengths,
                                    method="caption_logits"), np.float64)
    total, count = 0.0, 0
    for b in range(BATCH):
        row = 0.0
        for t in range(DEC_LENGTH):
            if target[b, t] == 0:
                continue
            z = logits[b, t] - logits[b, t].max()
            row += -(z[target[b, t]] - np.log(np.exp(z).sum()))
            count += 1
        np.testing.assert_allclose(out["caption_nll"][b], row, rtol=1e-4)
        total += row

    # the objective: contrastive_weight · InfoNCE (mean over the T texts) + caption_weight · (NLL per real token)
    texts = len(out["text_embeds"]) // BATCH
    if texts > 1:  # CLIPS: [B·T, E] → [B, T, E], as the objective's model_outputs returns them
        out = {**out, "text_embeds": out["text_embeds"].reshape(BATCH, texts, -1)}
    objective = Objective(cfg=loss_config_defaults(), num_texts=texts, captioner=True)
    loss, metrics, _ = objective(out, {}, {})
    image, text = np.float64(out["image_embeds"]), np.float64(out["text_embeds"]).reshape(BATCH, texts, -1)

    def log_softmax(z, axis):
        z = z - z.max(axis, keepdims=True)
        return z - np.log(np.exp(z).sum(axis, keepdims=True))

    infonce = np.mean([-0.5 * (np.trace(log_softmax(s, 1)) + np.trace(log_softmax(s, 0))) / BATCH
                       for s in (np.float64(out["logit_scale"]) * image @ text[:, t].T for t in range(texts))])
    np.testing.assert_allclose(metrics["contrastive_loss"], infonce, rtol=1e-5)
    np.testing.assert_allclose(loss, 1.0 * infonce + 2.0 * total / count, rtol=1e-5)
    np.testing.assert_allclose(metrics["caption_loss"], total / count, rtol=1e-5)


def test_coca_captions_the_first_text_from_its_one_unimodal_pass():
    """T = 2 texts, no target: the caption NLL is that of the first text, and the unimodal layers run once."""
    model, params, images = build("coca")
    tokens = random_tokens(np.random.default_rng(6), 2 * BATCH, LENGTH)
    first = tokens.reshape(BATCH, 2, LENGTH)[:, 0]
    unimodal_calls = []

    def count_unimodal(next_fun, args, kwargs, context):
        if context.method_name == "unimodal":
            unimodal_calls.append(args[0].shape)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(count_unimodal):
        out = model.apply({"params": params}, images, tokens)
    assert unimodal_calls == [(2 * BATCH, LENGTH)]
    separate = model.apply({"params": params}, images, tokens, first)  # the first text again, as a target
    np.testing.assert_allclose(out["caption_nll"], separate["caption_nll"], rtol=1e-5)
    np.testing.assert_array_equal(out["caption_tokens"], (first != 0).sum(axis=1))
    np.testing.assert_allclose(out["text_embeds"], separate["text_embeds"], atol=1e-6)


@pytest.mark.parametrize("kind", ["coca", "clips"])
def test_special_ids_come_from_the_config(kind):
    config = tiny_model_config(kind)
    config.text.update(bos_id=5, pad_id=1, eos_id=6)
    model = build_model(config)
    assert (model.bos_id, model.pad_id) == (5, 1)
    if kind == "clips":  # CoCa's text tower is its decoder's unimodal half, which needs no ids
        assert (model.text.eos_id, model.text.pad_id) == (6, 1)


@pytest.mark.slow
def test_coca_trains_and_captions_through_the_trainer(tiny_world, tmp_path):
    from bigvl.train.loop import train_and_evaluate
    from bigvl.train.metrics_log import read_metrics
    from tests.helpers.tiny import tiny_config
    config = tiny_config(tiny_world, total_steps=4, ckpt_steps=4)
    config.model.kind = "coca"
    config.model.text.depth = 1
    config.model.decoder.update(depth=1, context_length=16, num_queries=8)
    config.data.caption_strategy = "recap"
    config.evals.captioning.update(split=str(tiny_world / "retrieval.array_record"), max_length=8)
    config.mesh.update(data=2, fsdp=2, tensor=2)  # params sharded by their logical axis names
    metrics = train_and_evaluate(config, str(tmp_path))
    logged = [r for r in read_metrics(str(tmp_path)) if "caption_loss" in r]
    assert len(logged) == 4 and all(np.isfinite(r["caption_loss"]) and r["caption_loss"] > 0 for r in logged)
    last = logged[-1]
    assert last["loss_last"] == pytest.approx(last["contrastive_loss"] + 2 * last["caption_loss"], rel=1e-4)
    # CIDEr-D's maximum is 10 (cosine 1 at every order, ×10), BLEU's 1: a scaling slip exceeds them
    assert 0.0 <= metrics["captioning/cider_d"] <= 10.0 and 0.0 <= metrics["captioning/bleu4"] <= 1.0
    assert json.loads((tmp_path / "final_metrics.json").read_text())["step"] == 4


def test_pipeline_emits_the_caption_target(tiny_world):
    from array_record.python.array_record_module import ArrayRecordReader

    from bigvl.data.pipeline import ExampleProcessor
    from bigvl.data.records import decode_example
    from bigvl.data.tokenizer import Tokenizer
    from tests.helpers.tiny import tiny_config
    config = tiny_config(tiny_world)
    config.data.caption_strategy = "partial"
    path = str(tiny_world / "retrieval.array_record")
    reader = ArrayRecordReader(path)
    data = reader.read([0])[0]
    reader.close()
    processor = ExampleProcessor(config.data, 32, 16, config.data.tokenizer, target_field="long", target_length=40)
    example = processor((0, data), np.random.default_rng(0))
    tokenizer = Tokenizer(config.data.tokenizer)
    long_caption = decode_example(data)["captions"]["long"]
    np.testing.assert_array_equal(example["target_tokens"], tokenizer.encode([long_caption], 40)[0])
    assert example["tokens"].shape == (2, 16)

