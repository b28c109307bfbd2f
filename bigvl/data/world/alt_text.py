"""Web-like alt-texts of the synthetic world and their LaCLIP-style rewrites.

An alt-text is boilerplate unrelated to the image ("click here for more"), names objects
with one wrong colour or shape, or (most often) names only one of the objects correctly
("red circle clipart"); casing and file-name forms vary as on the web. A rewrite keeps the
alt-text's content, noise included, in other words.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bigvl.data.world.phrases import join_phrases, noun_phrase
from bigvl.data.world.scene import COLOURS, SHAPES, Scene, SceneObject


@dataclasses.dataclass(frozen=True)
class AltTextNoise:
    """How web-like the alt-texts are.

    p_boilerplate: text unrelated to the image ("click here for more").
    p_wrong_attribute: names objects but one with a wrong colour or shape.
    p_one_object: of the texts that name objects (right or wrong), the fraction naming
        only one object of a multi-object image; the others name 2..all objects.
    """
    p_boilerplate: float = 0.3
    p_wrong_attribute: float = 0.25
    p_one_object: float = 0.75

    def __post_init__(self):
        for name in ("p_boilerplate", "p_wrong_attribute", "p_one_object"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AltTextNoise.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.p_boilerplate + self.p_wrong_attribute > 1.0:
            raise ValueError("AltTextNoise: p_boilerplate + p_wrong_attribute exceeds 1")


BOILERPLATE = (
    ("free stock image download", "download this free stock image", "a free stock photo to download",
     "free stock picture available for download"),
    ("IMG_{n}.jpg", "an image file named IMG_{n}", "photo IMG_{n} from a camera roll", "picture number {n}"),
    ("click here for more", "click here to see more", "more information when you click here",
     "click for more details"),
    ("untitled", "an untitled image", "image without a title", "untitled picture"),
    ("best wallpapers hd {n}", "high definition wallpaper collection {n}",
     "a collection of the best hd wallpapers", "hd wallpaper number {n}"),
    ("shop now and save {p}% off", "save {p} percent when you shop today", "a sale banner offering {p}% off",
     "discount of {p}% available now"),
    ("screenshot {date}", "a screenshot taken on {date}", "screen capture from {date}", "screenshot dated {date}"),
    ("home page banner", "a banner for the home page", "website header image", "banner graphic for a homepage"),
    ("photo by {name}", "a picture taken by {name}", "image credit: {name}", "photographed by {name}"),
    ("logo design template", "a template for logo design", "editable logo design", "logo template for designers"),
)
PEOPLE = ("john smith", "maria garcia", "alex chen", "sam lee", "priya patel")
WEB_TEMPLATES = ("{m}", "{m} clipart", "{m} icon png", "{m} vector illustration", "cute {m} drawing",
                 "{m} sticker", "{m} free download", "abstract {m} art", "simple {m} graphic",
                 "{m} stock illustration", "{m} emoji", "geometric {m} design")
REWRITE_TEMPLATES = ("an illustration of {m}", "clip art showing {m}", "a simple drawing of {m}",
                     "{m} drawn as an icon", "a graphic featuring {m}", "a picture that contains {m}",
                     "a vector image of {m}", "a sticker design with {m}", "artwork depicting {m}",
                     "a cartoon of {m}")
CASINGS = ("lower", "title", "filename")
CASING_WEIGHTS = (0.7, 0.15, 0.15)


@dataclasses.dataclass(frozen=True)
class AltText:
    """The content of an alt-text; `alt_text_string` and `rewrite_alt_text` word it."""
    kind: str  # "boilerplate" | "wrong_attribute" | "accurate"
    mentions: tuple[tuple[str, str], ...]  # (colour, shape) as written, maybe wrong
    boilerplate: int  # index into BOILERPLATE (kind "boilerplate")
    phrasing: int  # which phrasing (BOILERPLATE group entry or WEB_TEMPLATES)
    number: int  # fills {n}, {p}, {date}, {name}
    casing: str  # "lower" | "title" | "filename"


def _mentioned_objects(scene: Scene, rng: np.random.Generator, p_one_object: float) -> list[SceneObject]:
    objects = scene.objects
    if len(objects) == 1 or rng.random() < p_one_object:
        weights = np.array([2.0 if o.size == "large" else 1.0 for o in objects])  # the salient one
        return [objects[int(rng.choice(len(objects), p=weights / weights.sum()))]]
    count = int(rng.integers(2, len(objects) + 1))
    return [objects[k] for k in rng.permutation(len(objects))[:count]]


def _corrupt_one(mentions: list[tuple[str, str]], scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Changes the colour or the shape of one mention so that it matches no object."""
    present = {(o.colour, o.shape) for o in scene.objects}
    k = int(rng.integers(len(mentions)))
    colour, shape = mentions[k]
    if rng.random() < 0.6:
        options = [(c, shape) for c in COLOURS if (c, shape) not in present]
    else:
        options = [(colour, s) for s in SHAPES if (colour, s) not in present]
    mentions = list(mentions)
    mentions[k] = options[int(rng.integers(len(options)))]
    return mentions


def sample_alt_text(scene: Scene, rng: np.random.Generator, noise: AltTextNoise) -> AltText:
    """A noisy web alt-text for the scene, drawn with the rates of `noise`."""
    u = rng.random()
    kind = ("boilerplate" if u < noise.p_boilerplate else
            "wrong_attribute" if u < noise.p_boilerplate + noise.p_wrong_attribute else "accurate")
    mentions: list[tuple[str, str]] = []
    if kind != "boilerplate":
        mentions = [(o.colour, o.shape) for o in _mentioned_objects(scene, rng, noise.p_one_object)]
        if kind == "wrong_attribute":
            mentions = _corrupt_one(mentions, scene, rng)
    boilerplate = int(rng.integers(len(BOILERPLATE)))
    phrasing = int(rng.integers(len(BOILERPLATE[boilerplate]) if kind == "boilerplate" else len(WEB_TEMPLATES)))
    return AltText(kind=kind, mentions=tuple(mentions), boilerplate=boilerplate, phrasing=phrasing,
                   number=int(rng.integers(1000, 10000)),
                   casing=CASINGS[int(rng.choice(len(CASINGS), p=CASING_WEIGHTS))])


def _fill_boilerplate(template: str, number: int) -> str:
    date = f"20{10 + number % 15}-{1 + number % 12:02d}-{1 + number % 28:02d}"
    return template.format(n=number, p=(10, 20, 30, 50, 70)[number % 5], date=date,
                           name=PEOPLE[number % len(PEOPLE)])


def alt_text_string(alt: AltText) -> str:
    """The alt-text as a web page would carry it (clipart wording, odd casing, file names)."""
    if alt.kind == "boilerplate":
        text = _fill_boilerplate(BOILERPLATE[alt.boilerplate][alt.phrasing], alt.number)
    else:
        text = WEB_TEMPLATES[alt.phrasing].format(m=join_phrases([f"{c} {s}" for c, s in alt.mentions]))
    if alt.casing == "title":
        return text.title()
    if alt.casing == "filename" and not text.endswith(".jpg"):
        return "-".join(text.replace(",", "").replace(":", "").split()) + (".png" if alt.number % 2 else ".jpg")
    return text


def rewrite_alt_text(alt: AltText, rng: np.random.Generator, count: int) -> list[str]:
    """`count` LaCLIP-style paraphrases of the alt-text: same content (noise included), new wording."""
    if alt.kind == "boilerplate":
        group = BOILERPLATE[alt.boilerplate]
        pool = [_fill_boilerplate(t, alt.number) for k, t in enumerate(group) if k != alt.phrasing]
    else:
        things = join_phrases([noun_phrase(c, s) for c, s in alt.mentions])
        pool = [t.format(m=things) for t in REWRITE_TEMPLATES]
    order = np.concatenate([rng.permutation(len(pool)) for _ in range(-(-count // len(pool)))])
    return [pool[k] for k in order[:count]]

