"""NegCLIP hard negatives: the word edits, the loss against a float64 reference, sharded ==
single device, and the pipeline / objective wiring."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bigvl.data.hard_negatives import NegativeWordsError, WordSwapNegatives
from bigvl.data.pipeline import make_train_dataset
from bigvl.data.tokenizer import Tokenizer
from bigvl.losses.contrastive import negclip_softmax_loss, softmax_contrastive_loss
from bigvl.parallel.mesh import make_mesh
from tests.helpers.numeric_reference import finite_difference_grads
from tests.helpers.tiny import tiny_config

GROUPS = [["red", "blue", "green"], ["circle", "square"], ["left", "right"]]


def _all_outputs(negatives, text, draws=400):
    rng = np.random.default_rng(0)
    return {negatives(text, rng) for _ in range(draws)}


def test_replace_and_swap_give_every_one_edit_and_nothing_else():
    negatives = WordSwapNegatives.from_groups(GROUPS)
    got = _all_outputs(negatives, "A red circle left of a blue square.")
    want = {  # replace: each group word by each other word of its group
        "A blue circle left of a blue square.", "A green circle left of a blue square.",
        "A red square left of a blue square.", "A red circle right of a blue square.",
        "A red circle left of a red square.", "A red circle left of a green square.",
        "A red circle left of a blue circle.",
        # swap: two different words of one group exchange places
        "A blue circle left of a red square.", "A red square left of a blue circle."}
    assert got == want


def test_swap_only_and_case_and_words_inside_other_words():
    negatives = WordSwapNegatives.from_groups(GROUPS, edits=["swap"])
    assert _all_outputs(negatives, "Red circle, blue square; reddish squares") == {
        "Blue circle, red square; reddish squares", "Red square, blue circle; reddish squares"}
    # one group word only: nothing to swap
    assert _all_outputs(negatives, "a red thing") == {None}


def test_text_without_group_words_has_no_negative_and_draws_are_seeded():
    negatives = WordSwapNegatives.from_groups(GROUPS)
    assert negatives("a screenshot taken on 2022-04-24", np.random.default_rng(0)) is None
    a = [negatives("a red circle left of a blue square", np.random.default_rng(s)) for s in range(20)]
    b = [negatives("a red circle left of a blue square", np.random.default_rng(s)) for s in range(20)]
    assert a == b and len(set(a)) > 3


@pytest.mark.parametrize("groups,edits,match", [
    ([["red"]], ("replace",), r"negative_word_groups\[0\] needs at least 2"),
    ([["red", "red"]], ("replace",), r"negative_word_groups\[0\] needs at least 2"),
    ([["red", "blue"], ["blue", "square"]], ("replace",), "'blue' is in groups 0 and 1"),
    ([["red", "light blue"]], ("replace",), "'light blue' is not one word"),
    ([["red", "blue"]], ("flip",), "negative_edits"),
])
def test_bad_groups_name_the_group_or_word(groups, edits, match):
    with pytest.raises(NegativeWordsError, match=match):
        WordSwapNegatives.from_groups(groups, edits)


# ---- the loss against an independent float64 reference with explicit loops ----

def _lse(values):
    top = max(values)
    return top + np.log(sum(np.exp(v - top) for v in values))


def reference_negclip(x, y, n, valid, scale):
    b = len(x)
    sim = lambda u, v: scale * float(np.dot(u, v))  # noqa: E731
    i2t = sum(_lse([sim(x[i], y[j]) for j in range(b)] + [sim(x[i], n[j]) for j in range(b) if valid[j]])
              - sim(x[i], y[i]) for i in range(b)) / b
    t2i = sum(_lse([sim(x[i], y[j]) for i in range(b)]) - sim(x[j], y[j]) for j in range(b)) / b
    return 0.5 * (i2t + t2i)


def _unit(rng, b, d):
    v = rng.normal(size=(b, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _case(b=6, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = _unit(rng, b, d)
    y = _unit(rng, b, d) + 0.5 * x
    n = y + 0.3 * _unit(rng, b, d)  # negatives near their texts: hard
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    valid = (np.arange(b) % 3 != 1).astype(np.int32)
    return x, y, n, valid, np.float64(7.0)


def test_loss_and_grads_match_the_float64_reference():
    x, y, n, valid, scale = _case()
    loss = lambda x, y, n, s: negclip_softmax_loss(x, y, n, jnp.asarray(valid), s)  # noqa: E731
    value, grads = jax.value_and_grad(loss, argnums=(0, 1, 2, 3))(*(jnp.float32(a) for a in (x, y, n, scale)))
    np.testing.assert_allclose(value, reference_negclip(x, y, n, valid, scale), rtol=1e-5)
    want = finite_difference_grads(lambda x, y, n, s: reference_negclip(x, y, n, valid, s), (x, y, n, scale))
    for got, w in zip(grads, want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


def test_without_valid_negatives_it_is_clip_and_with_them_it_is_larger():
    x, y, n, valid, scale = (jnp.float32(a) if a.dtype != np.int32 else a for a in _case())
    none = negclip_softmax_loss(x, y, n, np.zeros_like(valid), scale)
    np.testing.assert_allclose(none, softmax_contrastive_loss(x, y, scale), rtol=1e-6)
    assert negclip_softmax_loss(x, y, n, valid, scale) > none


def test_sharded_loss_and_grads_equal_single_device():
    x, y, n, valid, scale = _case(b=32, d=16, seed=3)
    args = (np.float32(x), np.float32(y), np.float32(n), valid, np.float32(scale))
    step = jax.value_and_grad(negclip_softmax_loss, argnums=(0, 1, 2, 4))
    single_value, single_grads = jax.jit(step)(*jax.device_put(args, jax.devices()[0]))
    mesh = make_mesh({"data": 2, "fsdp": 4})
    rows, vec = NamedSharding(mesh, P(("data", "fsdp"))), NamedSharding(mesh, P(("data", "fsdp")))
    shardings = (rows, rows, rows, vec, NamedSharding(mesh, P()))
    value, grads = jax.jit(step, in_shardings=shardings)(*[jax.device_put(a, s) for a, s in zip(args, shardings)])
    assert len(value.sharding.device_set) == 8
    np.testing.assert_allclose(value, single_value, rtol=1e-5)
    for got, want in zip(grads, single_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


# ---- wiring: the pipeline emits the negatives, the objective checks and uses them ----

def test_pipeline_emits_the_edited_text_of_each_example(tiny_world):
    from bigvl.data.world.scene import COLOURS, SHAPES
    config = tiny_config(tiny_world)
    config.data.caption_strategy, config.data.caption_field = "recap", "short"
    config.data.negative_word_groups = [list(COLOURS), list(SHAPES)]
    batch = next(iter(make_train_dataset(config)))
    assert batch["negative_tokens"].shape == (16, 16) and batch["negative_valid"].shape == (16,)
    # the context is 16 tokens: an edit past it leaves the text as it was, and is masked
    assert 0 < batch["negative_valid"].sum() < 16
    tokenizer = Tokenizer(config.data.tokenizer)
    words = set(COLOURS) | set(SHAPES)
    for tokens, negative, valid in zip(batch["tokens"][:, 0], batch["negative_tokens"], batch["negative_valid"]):
        text, edited = tokenizer.decode(tokens).split(), tokenizer.decode(negative).split()
        changed = [(a, b) for a, b in zip(text, edited) if a != b]
        assert len(text) == len(edited) and len(changed) <= 2 and (len(changed) > 0) == bool(valid)
        assert all(a.strip(",.") in words and b.strip(",.") in words for a, b in changed)


def test_objective_rejects_negatives_where_they_do_not_apply(tiny_world):
    from bigvl.losses.objective import Objective
    config = tiny_config(tiny_world)
    config.data.negative_word_groups = [["red", "blue"]]
    assert Objective.from_config(config).negatives
    config.data.caption_strategy = "multi"
    with pytest.raises(ValueError, match="data.negative_word_groups"):
        Objective.from_config(config)
