"""The `evals` section of a saved run config, read without the full schema (that is bigvl.config's).

`convert_flat_evals`: a config.json written before evaluators were `evals.NAME = {type, ...}`
entries (flat keys `evals.zeroshot`, `evals.captioning_max_length`, ...) → entries.
`captioning_entry`: the decode options of a run's captioner (`bigvl caption`, `recaption`,
`bigvl.caption`), from its entry of type captioning.
"""
from __future__ import annotations

import ml_collections

# The options of an `evals` entry of type "captioning" (bigvl.evaluators.captioning), with their defaults:
# the split and reference field it scores, and how it decodes (max_length ≤ model.decoder.context_length).
CAPTIONING_DEFAULTS = {"split": "", "field": "short", "max_length": 32, "method": "greedy", "beam_size": 4}

# Before evaluators were entries: each flat `evals` key → (entry NAME, option); `long_retrieval_field`
# became a second retrieval entry, `long_retrieval` (the metric prefix it had).
_FLAT_EVALS = {
    "zeroshot": ("zeroshot", "split"), "zeroshot_classes": ("zeroshot", "classes"),
    "retrieval": ("retrieval", "split"), "retrieval_field": ("retrieval", "field"),
    "hard_negatives": ("hard_negatives", "split"), "pointing": ("pointing", "split"),
    "captioning": ("captioning", "split"), "captioning_field": ("captioning", "field"),
    "captioning_max_length": ("captioning", "max_length"), "captioning_method": ("captioning", "method"),
    "captioning_beam_size": ("captioning", "beam_size"),
}


def convert_flat_evals(evals: dict) -> dict:
    """A saved `evals` section with the old flat keys → entries `{NAME: {"type": NAME, option: value}}`.

    An entry is made for each evaluator any of whose flat keys was saved (its split may be "":
    off, as it was); `long_retrieval_field` "long" → `long_retrieval = {type retrieval, split: the
    retrieval split, field: "long"}`. A section already in the entry form is returned as it is.
    """
    if not any(key in evals and not isinstance(evals[key], dict) for key in _FLAT_EVALS):
        return evals
    converted = {key: value for key, value in evals.items() if key not in _FLAT_EVALS and key != "long_retrieval_field"}
    for key, (name, option) in _FLAT_EVALS.items():
        if key in evals:
            converted.setdefault(name, {"type": name})[option] = evals[key]
    if evals.get("long_retrieval_field"):
        converted["long_retrieval"] = {"type": "retrieval", "split": evals.get("retrieval", ""),
                                       "field": evals["long_retrieval_field"]}
    return converted


def captioning_entry(config) -> ml_collections.ConfigDict:
    """The decode options of a run's captioner: its `evals` entry of type captioning over CAPTIONING_DEFAULTS.

    The entry named `captioning` if there is one, else the first of type captioning by name; the
    defaults alone when the config has none. Works on a config read without the schema (`read_run_config`).
    """
    evals = config.get("evals") or {}
    names = sorted(name for name in evals.keys() if isinstance(evals[name], (dict, ml_collections.ConfigDict))
                   and evals[name].get("type") == "captioning")
    names.sort(key=lambda name: name != "captioning")
    entry = ml_collections.ConfigDict(CAPTIONING_DEFAULTS)
    if names:
        entry.update({k: v for k, v in dict(evals[names[0]]).items() if k != "type"})
    return entry


def decode_length(config) -> int:
    """Tokens a run's captioner decodes by default: its captioning entry's max_length, at most the decoder's context."""
    return min(captioning_entry(config).max_length, config.model.decoder.context_length)
