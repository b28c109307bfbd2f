"""MobileCLIP's DataCompDR (reinforced DataComp) joined as a table: synthetic captions + stored teacher embeddings.

    table = load_datacompdr(["/data/dr/*.tar"], teacher=0, augmentation=0)
    table.lookup(key, meta) → {"syn_0": ..., "syn_4": ...};  table.extras(key, meta) → {"teacher": {...}}

A DataCompDR tar holds no image; per uid its members are ``url.txt``, ``syn.json``
({"syn_text": [5 captions]}), ``paug.json`` (augmentation parameters), ``npz`` (``image_emb``
[A, 1536]: one row per stored augmentation; ``text_emb`` [6, 1536]: the ground-truth caption,
then syn_text[i] at row 1 + i) and ``json`` ({uid, sha256}). The 1536 columns are two teachers
side by side (ViT-L-14 openai, then datacomp_xl; 768 each). Images come from DataComp via
img2dataset (its .json carries the uid), joined here on ``uid``.

The embeddings become the stored-teacher fields of bigvl/data/teacher.py: extras["teacher"] =
{image: row `augmentation` of `teacher`'s half, texts: {"alt": row 0, "syn_i": row 1 + i}; each
L2-normalised, stored as float16},
logit_scale, model}, so `loss.distill_weight` > 0 trains on them with the alt-text (the
ground-truth caption, the sample's .txt) or any syn_i as text. The image embedding is of one
stored augmentation, not of the crop the student sees (MobileCLIP pairs them exactly; bigvl
does not replay its augmentations).
"""
from __future__ import annotations

import glob
import io
import json
import os
import tarfile
from typing import Any, Sequence

import numpy as np

from bigvl.data.ingest.tables import CaptionTable, TableError, TableSpec
from bigvl.data.teacher import ALT_FIELD, TEACHER_KEY, pack_embedding

TEACHER_WIDTH = 768  # each of the two teachers' embedding size
SYN = "syn"


class DataCompDRTable(CaptionTable):
    """uid → synthetic captions syn_0 … syn_k (lookup) and the teacher embeddings (extras)."""

    def __init__(self, spec: TableSpec, index, teachers, rows: int, repeated: int):
        super().__init__(spec, index, rows, repeated)
        self.teachers = teachers

    def extras(self, key: str, meta: dict[str, Any]) -> dict[str, Any]:
        value = self.join_value(key, meta)
        return {TEACHER_KEY: self.teachers[value]} if value in self.teachers else {}


def _unit(vector: np.ndarray) -> np.ndarray:
    """The teacher's half L2-normalised in float32 (the stored-teacher format holds unit vectors)."""
    vector = np.asarray(vector, np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def iter_uid_groups(path: str):
    """(key, {extension: bytes}) of each sample of a DataCompDR tar, in file order, one sample in memory."""
    key, members = None, {}
    try:
        with tarfile.open(path, "r|*") as tar:
            for info in tar:
                if info.isfile():
                    this_key, _, ext = os.path.basename(info.name).partition(".")
                    if this_key != key and key is not None:
                        yield key, members
                        members = {}
                    key = this_key
                    members[ext] = tar.extractfile(info).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise TableError(f"--datacompdr {path}: unreadable tar ({type(e).__name__}: {e})") from None
    if key is not None:
        yield key, members


def _uid_groups(path: str):
    groups: dict[str, dict[str, bytes]] = {}
    for key, members in iter_uid_groups(path):
        groups.setdefault(key, {}).update(members)
    return groups


def dr_patterns(patterns: Sequence[str]) -> list[str]:
    """The DataCompDR tars of files or globs, in the given order; TableError for a pattern matching nothing."""
    paths = []
    for pattern in patterns:
        found = sorted(glob.glob(os.path.expanduser(pattern)))
        if not found:
            raise TableError(f"--datacompdr: no file matches {pattern!r}")
        paths += found
    return paths


def dr_spec(paths: Sequence[str]) -> TableSpec:
    """The table spec DataCompDR joins as (on the sample's uid; captions syn_0 … syn_k)."""
    return TableSpec(",".join(paths), "uid", "uid", ((SYN, "syn_text"),))


def dr_row(members: dict[str, bytes], where: str, teacher: int, augmentation: int,
           logit_scale: float) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(uid, captions syn_i, the teacher record of bigvl/data/teacher.py) of one DataCompDR sample's
    members; raises TableError naming `where` when a member is missing or malformed."""
    cols = slice(teacher * TEACHER_WIDTH, (teacher + 1) * TEACHER_WIDTH)
    try:
        uid = json.loads(members["json"])["uid"]
        syn = json.loads(members["syn.json"])["syn_text"]
        arrays = np.load(io.BytesIO(members["npz"]))
        image_emb, text_emb = arrays["image_emb"], arrays["text_emb"]
    except (KeyError, ValueError, OSError) as e:
        raise TableError(f"{where}: missing or malformed member ({type(e).__name__}: {e})") from None
    if image_emb.ndim != 2 or augmentation >= image_emb.shape[0] or text_emb.shape[0] != len(syn) + 1:
        raise TableError(f"{where}: image_emb {image_emb.shape} / text_emb {text_emb.shape} do not fit "
                         f"{len(syn)} captions and augmentation {augmentation}")
    captions = {f"{SYN}_{i}": text for i, text in enumerate(syn) if isinstance(text, str) and text.strip()}
    record = {"image": pack_embedding(_unit(image_emb[augmentation, cols])),
              "texts": {ALT_FIELD: pack_embedding(_unit(text_emb[0, cols])),
                        **{f"{SYN}_{i}": pack_embedding(_unit(text_emb[1 + i, cols])) for i in range(len(syn))}},
              "logit_scale": float(logit_scale),
              "model": f"DataCompDR teacher {teacher} augmentation {augmentation}"}
    return uid, captions, record


def check_dr_options(teacher: int) -> None:
    if teacher not in (0, 1):
        raise TableError(f"--dr_teacher: {teacher} is not 0 (ViT-L-14 openai) or 1 (datacomp_xl)")


def load_datacompdr(patterns: Sequence[str], teacher: int = 0, augmentation: int = 0,
                    logit_scale: float = 100.0) -> DataCompDRTable:
    """Reads DataCompDR tars (files or globs) into a table joined on the sample's `uid`.

    Raises TableError naming the file and uid of a member that is missing or malformed.
    """
    check_dr_options(teacher)
    paths = dr_patterns(patterns)
    index, teachers, rows, repeated = {}, {}, 0, 0
    for path in paths:
        for key, members in _uid_groups(path).items():
            rows += 1
            uid, captions, record = dr_row(members, f"--datacompdr {path}: sample {key}", teacher, augmentation,
                                           logit_scale)
            if uid in index:
                repeated += 1
                continue
            index[uid], teachers[uid] = captions, record
    return DataCompDRTable(dr_spec(paths), index, teachers, rows, repeated)
