"""The pointing game: its geometry against hand counts and a hand-built oracle encoder, and on a real run."""
import numpy as np
import pytest

from bigvl.evaluators import pointing


def _record(regions, rid="r"):
    return {"id": rid, "extras": {"regions": [dict(text=t, x=x, y=y, radius=r) for t, x, y, r in regions]}}


def test_queries_are_the_regions_of_each_record_in_order():
    records = [_record([("a blue star", 0.5, 0.2, 0.11), ("a red circle", 0.3, 0.3, 0.1)]),
               _record([("an orange square", 0.6, 0.4, 0.15)])]
    assert pointing.pointing_queries(records) == [
        (0, "a blue star", 0.5, 0.2, 0.11), (0, "a red circle", 0.3, 0.3, 0.1), (1, "an orange square", 0.6, 0.4, 0.15)]


def test_a_record_without_regions_is_named():
    with pytest.raises(KeyError, match="'img/7'.*extras.regions"):
        pointing.pointing_queries([_record([("a red circle", 0.3, 0.3, 0.1)]), {"id": "img/7", "extras": {}}])
    with pytest.raises(KeyError, match="'img/8'"):
        pointing.pointing_queries([_record([], rid="img/8")])
    with pytest.raises(ValueError, match="'img/9'.*radius"):
        pointing.pointing_queries([{"id": "img/9", "extras": {"regions": [{"text": "a", "x": 0.5, "y": 0.5}]}}])


def test_patch_centres_are_row_major():
    centres = pointing.patch_centres(4)
    np.testing.assert_allclose(centres[1], [0.375, 0.125])  # row 0, column 1
    np.testing.assert_allclose(centres[4], [0.125, 0.375])  # row 1, column 0


def test_hand_made_patches_give_the_hand_counted_accuracy_and_chance():
    """A 4 × 4 grid (patch centres at 1/8, 3/8, 5/8, 7/8), one-hot texts, and patches that
    carry a text's direction exactly where we put it.

    Region A (1/8, 1/8), r 0.2: only patch 0 inside (the next centre is 0.25 away) → chance 1/16;
    its text sits on patch 0: hit. Region B (1/2, 1/2), r 0.2: the 4 middle patches (√2/8 ≈
    0.177 away) → 4/16; its text sits on the corner patch 15: miss. Region C (5/8, 5/8), r 0.3,
    in a second image: its own patch and 4 edge neighbours (0.25 away; diagonals 0.354) →
    5/16; its text sits on patch 10 (row 2, column 2): hit.
    """
    records = [_record([("A", 0.125, 0.125, 0.2), ("B", 0.5, 0.5, 0.2)]), _record([("C", 0.625, 0.625, 0.3)])]
    queries = pointing.pointing_queries(records)
    texts = np.eye(3)
    patches = np.zeros((2, 16, 3))
    patches[0, 0] = texts[0]
    patches[0, 15] = texts[1]
    patches[1, 10] = texts[2]
    out = pointing.pointing_accuracy(patches, texts, queries)
    assert out["queries"] == 3
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["chance"] == pytest.approx((1 / 16 + 4 / 16 + 5 / 16) / 3)


def test_oracle_patches_point_right_and_chance_is_the_disc_fraction():
    grid, dim = 8, 32
    records = [_record([("a red circle", 0.2, 0.7, 0.11), ("a blue star", 0.65, 0.3, 0.132)])]
    queries = pointing.pointing_queries(records)
    rng = np.random.default_rng(0)
    texts = rng.normal(size=(len(queries), dim))
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    patches = rng.normal(size=(1, grid * grid, dim)) * 0.05
    for q, (_, _, x, y, _) in enumerate(queries):  # the object's centre patch carries its text
        patches[0, int(y * grid) * grid + int(x * grid)] += texts[q]
    out = pointing.pointing_accuracy(patches, texts, queries)
    assert out["accuracy"] == 1.0 and out["queries"] == 2
    # chance by brute force over pixel-free patch centres
    want = np.mean([np.mean([np.hypot((c + .5) / grid - x, (r + .5) / grid - y) <= rad
                             for r in range(grid) for c in range(grid)]) for _, _, x, y, rad in queries])
    np.testing.assert_allclose(out["chance"], want)
    # swapping the texts points every query at the other object: no hit
    assert pointing.pointing_accuracy(patches, texts[::-1], queries)["accuracy"] == 0.0


def test_pointing_runs_on_a_trained_two_tower_run(tiny_world, tiny_run):
    from bigvl.inference.run import load_run
    out = pointing.evaluate(load_run(str(tiny_run)).encoder, str(tiny_world / "retrieval.array_record"))
    assert out["queries"] > 40 and 0.0 < out["chance"] < 0.5
    hits = out["accuracy"] * out["queries"]  # a fraction of the queries: a whole number of hits
    assert 0 <= round(hits) <= out["queries"] and abs(hits - round(hits)) < 1e-6


def test_a_tie_between_an_inside_and_an_outside_patch_is_a_miss():
    """4 × 4 grid; region (1/8, 1/8), r 0.2 holds patch 0 only; region (1/2, 1/2), r 0.2 holds patches 5, 6, 9, 10.

    Query 0: every patch equal (a collapsed model) → miss (argmax alone would pick patch 0: a hit).
    Query 1: patches 5 and 15 tie for the best → miss. Query 2: patches 5 and 10, both inside, tie → hit.
    """
    records = [_record([("A", 0.125, 0.125, 0.2)]), _record([("B", 0.5, 0.5, 0.2)]), _record([("B", 0.5, 0.5, 0.2)])]
    queries = pointing.pointing_queries(records)
    texts = np.tile([1.0, 0.0], (3, 1))
    patches = np.tile([0.5, 0.5], (3, 16, 1))
    patches[1, [5, 15]] = [1.0, 0.0]
    patches[2, [5, 10]] = [1.0, 0.0]
    per_query = [pointing.pointing_accuracy(patches[i:i + 1], texts[i:i + 1], [(0, *q[1:])])["accuracy"]
                 for i, q in enumerate(queries)]
    assert per_query == [0.0, 0.0, 1.0]
    assert pointing.pointing_accuracy(patches, texts, queries)["accuracy"] == pytest.approx(1 / 3)
