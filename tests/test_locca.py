"""SigLIP 2's LocCa decoder (bigvl/models/locca.py, bigvl/data/locca.py, bigvl/losses/locca.py)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bigvl.config import base_config
from bigvl.data.locca import LoccaTargets, LoccaVocab, box_iou, crop_box, dequantise_box, quantise_box, record_regions, sequence
from bigvl.evaluators.refexp import refexp_accuracy
from bigvl.losses.locca import locca_loss
from bigvl.models import build_model
from bigvl.models.locca import LoccaTwoTower, locca_vocab_size, strip_locca
from bigvl.models.two_tower import TwoTower
from bigvl.parallel.mesh import logical_shardings, make_mesh, rules_from_config
from tests.helpers.tiny import tiny_towers


def test_box_quantisation_round_trip_on_hand_worked_boxes():
    # 8 bins of width 1/8: 0.1 → bin 0, 0.25 → 2, 0.5 → 4, 1.0 → the last bin 7 (not 8); centres (k + 0.5) / 8
    np.testing.assert_array_equal(quantise_box((0.1, 0.25, 0.5, 1.0), 8), [0, 2, 4, 7])
    np.testing.assert_allclose(dequantise_box([0, 2, 4, 7], 8), [0.0625, 0.3125, 0.5625, 0.9375])
    np.testing.assert_array_equal(quantise_box((-0.2, 1.3, 0.999, 0.125), 8), [0, 7, 7, 1])  # clipped
    boxes = np.random.default_rng(0).uniform(0, 1, (100, 4))
    assert np.abs(dequantise_box(quantise_box(boxes, 32), 32) - boxes).max() <= 1 / 64 + 1e-12


def test_box_iou_and_refexp_accuracy_on_a_hand_worked_case():
    # overlap 0.25 × 0.25 = 1/16, union 1/4 + 1/4 − 1/16 = 7/16 → IoU 1/7; the half box: IoU 0.5 exactly, a hit
    predicted = np.array([[0, 0, 0.5, 0.5], [0, 0, 0.5, 1.0], [0.6, 0.6, 0.5, 0.5]])
    truth = np.array([[0.25, 0.25, 0.75, 0.75], [0, 0, 1, 1], [0, 0, 1, 1]])
    np.testing.assert_allclose(box_iou(predicted, truth), [1 / 7, 0.5, 0.0])  # an inverted box has no area
    got = refexp_accuracy(predicted, truth)
    assert got["accuracy"] == pytest.approx(1 / 3) and got["mean_iou"] == pytest.approx((1 / 7 + 0.5) / 3)


def test_sequences_mask_the_prompt_in_the_labels_and_the_targets_in_parallel_inputs():
    inputs, labels = sequence([10, 11], [20, 21, 22], 8, bos_id=2, pad_id=0)
    np.testing.assert_array_equal(inputs, [2, 10, 11, 20, 21, 0, 0, 0])
    np.testing.assert_array_equal(labels, [0, 0, 20, 21, 22, 0, 0, 0])
    inputs, labels = sequence([10, 11], [20, 21, 22], 8, bos_id=2, pad_id=0, mask_id=99)
    np.testing.assert_array_equal(inputs, [2, 10, 11, 99, 99, 0, 0, 0])  # no target token is ever an input
    np.testing.assert_array_equal(labels, [0, 0, 20, 21, 22, 0, 0, 0])
    inputs, labels = sequence([10], [20, 21, 22, 23], 3, bos_id=2, pad_id=0)  # cut to fit
    np.testing.assert_array_equal(labels, [0, 20, 21])


def test_regions_follow_the_crop_and_come_from_the_scene():
    # crop = the right half: x 0.5..1 becomes 0..1; a box half outside is kept (exactly half), one mostly outside is not
    assert crop_box((0.5, 0.0, 0.75, 0.5), (0.5, 0.0, 1.0, 1.0)) == (0.0, 0.0, 0.5, 0.5)
    assert crop_box((0.25, 0.0, 0.75, 0.5), (0.5, 0.0, 1.0, 1.0)) == (0.0, 0.0, 0.5, 0.5)
    assert crop_box((0.0, 0.0, 0.6, 0.5), (0.5, 0.0, 1.0, 1.0)) is None
    scene = {"objects": [{"colour": "red", "shape": "circle", "x": 0.5, "y": 0.25, "radius": 0.1},
                         {"colour": "blue", "shape": "star", "x": 0.2, "y": 0.2, "radius": 0.1},
                         {"colour": "blue", "shape": "star", "x": 0.8, "y": 0.8, "radius": 0.1}]}
    (text, box), = record_regions({"extras": {"scene": scene}})  # the repeated blue star is ambiguous: left out
    assert text == "a red circle"
    np.testing.assert_allclose(box, (0.5 - 0.11, 0.25 - 0.11, 0.5 + 0.11, 0.25 + 0.11))  # EXTENT 1.1
    from bigvl.data.world.examples import pointing_regions  # the pointing game's regions of the same scene
    from bigvl.data.world.scene import Scene, SceneObject
    world_scene = Scene(tuple(SceneObject(o["colour"], o["shape"], "small", o["x"], o["y"], o["radius"], 0.0, (0, 0, 0))
                              for o in scene["objects"]), "white", "plain", 0.1, 0.0)
    assert [(r["text"], r["x"] - r["radius"]) for r in pointing_regions(world_scene)] == [(text, box[0])]
    regions = record_regions({"id": "r", "extras": {"regions": [{"text": "a cat", "x0": 0, "y0": 0.1, "x1": 1,
                                                                   "y1": 0.9}]}})
    assert regions == [("a cat", (0.0, 0.1, 1.0, 0.9))]
    with pytest.raises(ValueError, match="'r'.*region needs"):
        record_regions({"id": "r", "extras": {"regions": [{"text": "a cat"}]}})


def _tiny_locca_config():
    c = base_config()
    tiny_towers(c.model, image_size=16, patch_size=4, vocab_size=40, context_length=8)
    c.model.embed_dim = 16
    c.model.bias_init, c.model.temperature_init = -10.0, 10.0
    c.model.locca.update(depth=1, num_bins=8, context_length=8)
    return c


class _Tokenizer:  # ids = characters' positions in the alphabet + 4; pad 0, eos 3
    pad_id, eos_id = 0, 3

    def encode(self, texts, length):
        rows = np.zeros((len(texts), length), np.int32)
        for i, text in enumerate(texts):
            ids = [4 + ord(ch) - ord("a") for ch in text if ch.isalpha()][:length - 1] + [3]
            rows[i, :len(ids)] = ids
        return rows


def test_targets_write_refexp_boxes_as_reserved_coordinate_ids():
    c = _tiny_locca_config()
    c.model.locca.update(task_weights=[0.0, 1.0, 0.0], parallel_fraction=0.0)
    targets = LoccaTargets.from_config(c.model)
    record = {"extras": {"regions": [{"text": "ab", "x0": 0.0, "y0": 0.25, "x1": 0.5, "y1": 1.0}]}}
    out = targets(record, "caption", (0.0, 0.0, 1.0, 1.0), _Tokenizer(), np.random.default_rng(0))
    # vocab 40: REF = 41, coordinates from 44; bins of the box at 8 bins: 0, 2, 4, 7
    np.testing.assert_array_equal(out["locca_inputs"], [2, 41, 4, 5, 44, 46, 48, 0])
    np.testing.assert_array_equal(out["locca_labels"], [0, 0, 0, 44, 46, 48, 51, 0])


def test_locca_loss_matches_a_float64_reference():
    c = _tiny_locca_config()
    model = build_model(c.model)
    assert isinstance(model, LoccaTwoTower)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    tokens = rng.integers(4, 40, (3, 8)).astype(np.int32)
    inputs = rng.integers(1, 52, (3, 8)).astype(np.int32)
    labels = np.where(rng.random((3, 8)) < 0.3, 0, rng.integers(1, 52, (3, 8))).astype(np.int32)
    params = nn.unbox(model.init(jax.random.PRNGKey(0), images, tokens)["params"])
    out = model.apply({"params": params}, images, tokens, locca_inputs=inputs, locca_labels=labels)
    logits = np.asarray(model.apply({"params": params}, images, inputs, method=LoccaTwoTower.locca_logits), np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, labels[..., None], -1)[..., 0] * (labels != 0)
    np.testing.assert_allclose(out["locca_nll"], nll.sum(1), rtol=1e-5)
    np.testing.assert_allclose(locca_loss(out), nll.sum() / (labels != 0).sum(), rtol=1e-5)
    assert set(params) >= {"locca", "image", "text"}
    # the model's table and the data's ids agree: 40 text ids + CAP, REF, GCAP, MASK + 8 bins
    assert params["locca"]["token_embedding"].shape[0] == locca_vocab_size(c.model) == LoccaVocab(40, 8).size == 52
    # after pretraining the decoder is dropped: the rest are exactly the plain SigLIP model's params
    stripped, plain_cfg = strip_locca(params, c.model)
    plain = build_model(plain_cfg)
    assert type(plain) is TwoTower and c.model.locca.depth == 1
    shapes = jax.eval_shape(lambda: nn.unbox(plain.init(jax.random.PRNGKey(0), images, tokens)["params"]))
    assert jax.tree.structure(shapes) == jax.tree.structure(stripped)


@pytest.mark.slow  # ~10 s of compiling on an idle 2-core machine
def test_locca_loss_and_gradients_on_an_8_device_mesh_equal_one_device():
    c = _tiny_locca_config()
    model = build_model(c.model)
    rng = np.random.default_rng(1)
    batch = (rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8), rng.integers(4, 40, (8, 8)).astype(np.int32),
             rng.integers(1, 52, (8, 8)).astype(np.int32), rng.integers(0, 52, (8, 8)).astype(np.int32))
    rules = rules_from_config(c.sharding_rules)
    boxed = model.init(jax.random.PRNGKey(0), *batch[:2])["params"]
    params = nn.unbox(boxed)

    def loss(p, images, tokens, inputs, labels):
        with nn.logical_axis_rules(rules):
            return locca_loss(model.apply({"params": p}, images, tokens, locca_inputs=inputs, locca_labels=labels))
    step = jax.jit(jax.value_and_grad(loss))
    want_value, want_grads = step(params, *batch)
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    with jax.set_mesh(mesh):
        shardings = logical_shardings(jax.eval_shape(lambda: boxed), mesh, rules)
        sharded = jax.device_put(params, shardings)
        data = [jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp")))) for x in batch]
        value, grads = step(sharded, *data)
    assert len(data[0].sharding.device_set) == 8
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, want_grads)
    assert jnp.isfinite(value)
