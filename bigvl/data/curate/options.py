"""What a curation run does (`CurateOptions`) and what each record contributes to it (`record_features`)."""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

from bigvl.data.curate.dedup import image_hashes
from bigvl.data.curate.metaclip import EntryMatcher
from bigvl.data.records import RecordError, decode_example

log = logging.getLogger(__name__)

SCORE_KEY = "clip_score"  # extras[SCORE_KEY][field], written by `bigvl score_captions`
DEDUP_MODES = ("none", "exact", "near")


@dataclasses.dataclass(frozen=True)
class CurateOptions:
    """Everything besides the input that decides the output shards (stored as the run's options).

    entries: the metadata list (empty = no balancing); balance_t: MetaCLIP's t (entries matched by
    more than t pairs are sampled down to about t); match_captions: also match the captions, not only
    the alt-text; case_sensitive: match as MetaCLIP does (default: case-folded); keep_fraction: the
    score filter's q (keep the top q by `score_field`; 1 = off);
    dedup: "none", "exact" (image bytes) or "near" (exact + perceptual hash within `max_distance`
    bits); seed: of the balancing draws.
    """
    entries: tuple[str, ...] = ()
    balance_t: float = 0.0
    match_captions: bool = False
    case_sensitive: bool = False
    keep_fraction: float = 1.0
    score_field: str = "alt"
    dedup: str = "none"
    max_distance: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.entries and self.balance_t <= 0:
            raise ValueError(f"balancing needs a threshold t > 0 (--balance_t), got {self.balance_t}")
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction (--keep_top) must be in (0, 1], got {self.keep_fraction}")
        if self.dedup not in DEDUP_MODES:
            raise ValueError(f"dedup must be one of {DEDUP_MODES}, got {self.dedup!r}")
        if not 0 <= self.max_distance < 32:
            raise ValueError(f"max_distance must be in [0, 32), got {self.max_distance}")

    @property
    def balancing(self) -> bool:
        return bool(self.entries)

    @property
    def filtering(self) -> bool:
        return self.keep_fraction < 1.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def record_features(key: tuple, data: bytes, options: CurateOptions, matcher: EntryMatcher | None,
                    where: str) -> dict[str, Any]:
    """What curation needs of one record: {key, id, entries [int], score float|None, exact str, near int}
    (hashes only when de-duplicating), or {key, fault: one line} for a record that does not decode."""
    try:
        record = decode_example(data, where=where)
        features: dict[str, Any] = {"key": key, "id": str(record["id"])}
        if matcher is not None:
            texts = [record["alt_text"]] + (list(record["captions"].values()) if options.match_captions else [])
            features["entries"] = sorted({e for text in texts if isinstance(text, str) for e in matcher(text)})
        if options.filtering:
            scores = record["extras"].get(SCORE_KEY)
            score = scores.get(options.score_field) if isinstance(scores, dict) else None
            features["score"] = float(score) if isinstance(score, (int, float)) else None
        if options.dedup != "none":
            features["exact"], features["near"] = image_hashes(record["image"])
        return features
    except (RecordError, ValueError, TypeError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        log.warning("curate: skipping %s (%s)", where, reason)
        return {"key": key, "fault": reason}
