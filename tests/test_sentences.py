"""Sentence splitting against hand-split texts and the synthetic world's '. '-joined long captions."""
import numpy as np
import pytest

from bigvl.data import world as world
from bigvl.data.sentences import join_sentences, split_sentences


@pytest.mark.parametrize("text,want", [
    ("A red circle. It is large!  The background is grey.",
     ["A red circle.", "It is large!", "The background is grey."]),
    ("Is it a star? Yes", ["Is it a star?", "Yes"]),
    ('He said "a ring." Then a square.', ['He said "a ring."', "Then a square."]),
    ("(A circle.) A square.", ["(A circle.)", "A square."]),
    ("first line\nsecond line\n\n third line. ", ["first line", "second line", "third line."]),
    ("Shapes, e.g. a star. Dr. Li drew it vs. a ring.",
     ["Shapes, e.g. a star.", "Dr. Li drew it vs. a ring."]),
    ("It is 3.5 cm wide, see example.com. Done.", ["It is 3.5 cm wide, see example.com.", "Done."]),
    ("Wait... what? Ok!!", ["Wait...", "what?", "Ok!!"]),
    ("no final period", ["no final period"]),
    ("A star.  .  A ring.", ["A star.", "A ring."]),
    ("  lots   of\tspace .  ", ["lots of space ."]),
    ("", []),
    ("   \n ", []),
])
def test_split_by_hand(text, want):
    assert split_sentences(text) == want


def test_synthetic_long_captions_split_at_every_period():
    rng = np.random.default_rng(0)
    for _ in range(200):
        scene = world.sample_scene(rng, int(rng.integers(1, 5)))
        caption = world.long_caption(scene, rng)
        parts = caption[:-1].split(". ")  # the world joins sentences with '. ' and ends with '.'
        assert split_sentences(caption) == [p + "." for p in parts]
        assert join_sentences(split_sentences(caption)) == caption
