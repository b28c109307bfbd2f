"""MobileCLIP distillation: the KD loss against a float64 reference, the stored teacher
embeddings (written by a trained run, read back by the loader) and a student step."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bigvl.data.records import RecordError
from bigvl.data.teacher import TEACHER_KEY, pack_embedding, teacher_targets
from bigvl.losses.contrastive import distillation_loss
from bigvl.parallel.mesh import make_mesh
from tests.helpers.tiny import tiny_config


def _unit(rng, *shape):
    x = rng.normal(size=shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _kd_reference(x, y, scale, tx, ty, tscale):
    """float64, one row at a time: ½ (mean row KL + mean column KL) of teacher ‖ student softmaxes."""
    def softmax(v):
        e = np.exp(v - v.max())
        return e / e.sum()
    s, t = scale * x @ y.T, tscale * tx @ ty.T
    rows = [np.sum(softmax(t[i]) * (np.log(softmax(t[i])) - np.log(softmax(s[i])))) for i in range(len(s))]
    cols = [np.sum(softmax(t[:, j]) * (np.log(softmax(t[:, j])) - np.log(softmax(s[:, j]))))
            for j in range(len(s))]
    return 0.5 * (np.mean(rows) + np.mean(cols))


def test_kd_loss_matches_reference_and_is_zero_when_student_is_teacher():
    rng = np.random.default_rng(0)
    x, y, tx, ty = _unit(rng, 12, 8), _unit(rng, 12, 8), _unit(rng, 12, 5), _unit(rng, 12, 5)
    got = distillation_loss(jnp.float32(x), jnp.float32(y), 9.0, jnp.float32(tx), jnp.float32(ty), 30.0)
    np.testing.assert_allclose(got, _kd_reference(x, y, 9.0, tx, ty, 30.0), rtol=1e-5)
    same = distillation_loss(jnp.float32(x), jnp.float32(y), 7.0, jnp.float32(x), jnp.float32(y), 7.0)
    np.testing.assert_allclose(same, 0.0, atol=1e-6)
    # the teacher side is a constant: no gradient flows to it
    grads = jax.grad(distillation_loss, argnums=(3, 4))(x, y, 9.0, tx, ty, 30.0)
    assert all(np.all(g == 0) for g in grads)


def test_sharded_kd_loss_equals_single_device():
    rng = np.random.default_rng(1)
    args = tuple(np.float32(a) for a in (_unit(rng, 32, 8), _unit(rng, 32, 8), _unit(rng, 32, 6), _unit(rng, 32, 6)))
    step = jax.jit(jax.value_and_grad(lambda x, y, s, tx, ty: distillation_loss(x, y, s, tx, ty, 20.0),
                                      argnums=(0, 1, 2)))
    single_value, single_grads = step(*jax.device_put(args[:2] + (np.float32(8.0),) + args[2:], jax.devices()[0]))
    mesh = make_mesh({"data": 8})
    batch, rep = NamedSharding(mesh, P(("data", "fsdp"))), NamedSharding(mesh, P())
    sharded = [jax.device_put(a, s) for a, s in zip(args[:2] + (np.float32(8.0),) + args[2:],
                                                      (batch, batch, rep, batch, batch))]
    value, grads = step(*sharded)
    np.testing.assert_allclose(value, single_value, rtol=1e-5)
    for got, want in zip(grads, single_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _record(teacher=True):
    record = {"id": "r7", "alt_text": "a red ball", "captions": {"short": "A red circle.", "long": "Long."},
              "extras": {}}
    if teacher:
        record["extras"][TEACHER_KEY] = {"image": pack_embedding(np.full(4, 0.5)), "logit_scale": 50.0,
                                         "texts": {"alt": pack_embedding(np.arange(4)), "short": pack_embedding(-np.arange(4))}}
    return record


def test_teacher_targets_pick_the_chosen_field_and_name_what_is_missing():
    got = teacher_targets(_record(), ["A red circle."], "#3")
    np.testing.assert_array_equal(got["teacher_text"], -np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(got["teacher_image"], np.full(4, 0.5, np.float32))
    assert got["teacher_logit_scale"] == 50.0
    np.testing.assert_array_equal(teacher_targets(_record(), ["a red ball"], "#3")["teacher_text"], np.arange(4))
    with pytest.raises(RecordError, match=r"#3 \(id 'r7'\): no teacher embedding.*\['long'\]"):
        teacher_targets(_record(), ["Long."], "#3")
    with pytest.raises(RecordError, match="not a whole field"):
        teacher_targets(_record(), ["A red"], "#3")
    with pytest.raises(RecordError, match="no teacher embeddings"):
        teacher_targets(_record(teacher=False), ["a red ball"], "#3")


@pytest.mark.slow
def test_teacher_embeddings_round_trip_and_a_student_distils(tiny_world, tiny_run, tmp_path):
    from bigvl import api
    from bigvl.config import validate
    from bigvl.data.pipeline import resolve_paths
    from bigvl.data.records import decode_example, read_records
    from bigvl.inference.teacher_embeddings import add_teacher_embeddings
    from bigvl.train.loop import train_and_evaluate

    shards = resolve_paths([str(tiny_world / "train-*.array_record")])
    out = tmp_path / "reinforced"
    stats = add_teacher_embeddings(str(tiny_run), shards, str(out), fields=["alt", "short"])
    assert stats == {"records": 192, "texts": 384, "copied_unchanged": 0}
    assert json.loads((out / "teacher.json").read_text())["records"] == 192
    # the stored embeddings are the teacher's own (float16 storage)
    run = api.load(str(tiny_run))
    record = decode_example(read_records(str(out / shards[0].split("/")[-1]))[5])
    stored = teacher_targets(record, [record["captions"]["short"]], "#5")
    want_text = api.encode_texts(run, [record["captions"]["short"]])[0]
    np.testing.assert_allclose(stored["teacher_text"], want_text, atol=2e-3)
    from bigvl.data.image_ops import decode_image
    want_image = api.encode_images(run, [np.asarray(decode_image(record["image"]))])[0]
    np.testing.assert_allclose(stored["teacher_image"], want_image, atol=2e-3)

    config = tiny_config(tiny_world, total_steps=2, ckpt_steps=2)
    config.data.train_paths = [str(out / "train-*.array_record")]
    config.data.caption_strategy, config.loss.distill_weight = "mix", 0.75
    validate(config)
    train_and_evaluate(config, str(tmp_path / "student"))
    rows = [json.loads(line) for line in open(tmp_path / "student" / "metrics.jsonl") if '"loss"' in line]
    assert [r["step"] for r in rows] == [1, 2] and all(r["data_skipped"] == 0 for r in rows)
    for r in rows:
        np.testing.assert_allclose(r["loss"], 0.25 * r["contrastive_loss"] + 0.75 * r["distill_loss"], rtol=1e-5)
        assert r["distill_loss"] > 0


def test_distillation_needs_whole_stored_texts():
    from bigvl.config import ConfigError, load_config, validate
    config = load_config("recipe_demo:distill,steps=40")
    assert config.loss.distill_weight == 0.75 and config.data.train_paths[0].endswith(
        "_teacher/train-*.array_record")
    validate(config)
    config.data.caption_strategy = "partial"
    with pytest.raises(ConfigError, match="loss.distill_weight.*whole"):
        validate(config)
