"""The pointing game: its geometry against a hand-built oracle encoder, and on a real run."""
import numpy as np

from bigvl.evaluators import pointing
from bigvl.data.world import EXTENT


def _record(objects, rid="r"):
    return {"id": rid, "extras": {"scene": {"objects": [
        dict(colour=c, shape=s, x=x, y=y, radius=r) for c, s, x, y, r in objects]}}}


def test_queries_name_each_unique_object_and_skip_repeated_ones():
    records = [_record([("red", "circle", 0.3, 0.3, 0.1), ("red", "circle", 0.7, 0.7, 0.1),
                        ("blue", "star", 0.5, 0.2, 0.1)]),
               _record([("orange", "square", 0.6, 0.4, 0.15)])]
    assert [(i, text) for i, text, *_ in pointing.pointing_queries(records)] == [
        (0, "a blue star"), (1, "an orange square")]


def test_patch_centres_are_row_major():
    centres = pointing.patch_centres(4)
    np.testing.assert_allclose(centres[1], [0.375, 0.125])  # row 0, column 1
    np.testing.assert_allclose(centres[4], [0.125, 0.375])  # row 1, column 0


def test_oracle_patches_point_right_and_chance_is_the_disc_fraction():
    grid, dim = 8, 32
    records = [_record([("red", "circle", 0.2, 0.7, 0.1), ("blue", "star", 0.65, 0.3, 0.12)])]
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
    want = np.mean([np.mean([np.hypot((c + .5) / grid - x, (r + .5) / grid - y) <= EXTENT * rad
                             for r in range(grid) for c in range(grid)]) for _, _, x, y, rad in queries])
    np.testing.assert_allclose(out["chance"], want)
    # swapping the texts points every query at the other object: no hit
    assert pointing.pointing_accuracy(patches, texts[::-1], queries)["accuracy"] == 0.0


def test_pointing_runs_on_a_trained_two_tower_run(tiny_world, tiny_run):
    from bigvl.inference.run import load_run
    out = pointing.evaluate(load_run(str(tiny_run)).encoder, str(tiny_world / "retrieval.array_record"))
    assert out["queries"] > 40 and 0.0 <= out["accuracy"] <= 1.0 and 0.0 < out["chance"] < 0.5
