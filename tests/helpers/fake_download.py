"""A fake img2dataset download, recaption tables for it, and what was planted (tests, benchmarks).

    planted = make_download(tmp_path / "dl", shards=3, per_shard=10)

Writes, as img2dataset does with --output_format webdataset: {shard:05d}.tar holding {key}.jpg,
{key}.txt, {key}.json (url, key, status, width, height, uid, sha256) with key = shard·10^4 + index
zero-padded to 9 digits, {shard:05d}.parquet (every row, failed downloads included) and
{shard:05d}_stats.json. Image i is a solid colour (COLOURS[i % 8]) with a small square whose
place is in its captions, so a model can learn them.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30),
           "purple": (140, 30, 180), "orange": (240, 140, 20), "white": (245, 245, 245), "black": (15, 15, 15)}
PLACES = ("top left", "top right", "bottom left", "bottom right")


def _jpeg(colour: str, place: int, size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.empty((size, size, 3), np.uint8)
    pixels[:] = COLOURS[colour]
    half = size // 2
    y, x = divmod(place, 2)
    pixels[y * half + 2:y * half + half - 2, x * half + 2:x * half + half - 2] = 128
    noisy = np.clip(pixels.astype(int) + rng.integers(-8, 9, pixels.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 0
    tar.addfile(info, io.BytesIO(data))


def make_download(root, shards: int = 3, per_shard: int = 10, size: int = 48, corrupt=((1, 3),),
                  failed=((0, 5),)) -> dict:
    """Writes the download; returns what was planted: good samples (key → {url, uid, colour, place, alt, n}),
    corrupt keys, failed keys (in the parquet, not in the tar)."""
    root.mkdir(parents=True, exist_ok=True)
    samples, corrupt_keys, failed_keys = {}, [], []
    for shard in range(shards):
        rows = []
        with tarfile.open(root / f"{shard:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(per_shard):
                key = f"{shard * 10 ** 4 + i:09d}"
                n = shard * per_shard + i
                colour, place = list(COLOURS)[n % 8], n % 4
                url = f"http://example.com/img/{n}.jpg"
                uid = hashlib.md5(url.encode()).hexdigest()
                alt = f"{colour} picture {n}"
                if (shard, i) in failed:
                    rows.append(dict(url=url, key=key, status="failed_to_download", error_message="HTTP 404",
                                     width=None, height=None, uid=uid))
                    failed_keys.append(key)
                    continue
                image = _jpeg(colour, place, size, n)
                if (shard, i) in corrupt:
                    image = image[:len(image) // 3]  # truncated JPEG: does not decode
                    corrupt_keys.append(key)
                meta = dict(url=url, key=key, status="success", error_message=None, width=size, height=size,
                            uid=uid, sha256=hashlib.sha256(image).hexdigest(), caption=alt)
                _add(tar, f"{key}.jpg", image)
                _add(tar, f"{key}.txt", alt.encode())
                _add(tar, f"{key}.json", json.dumps(meta).encode())
                rows.append({k: meta[k] for k in ("url", "key", "status", "error_message", "width", "height",
                                                  "uid")})
                if (shard, i) not in corrupt:
                    samples[key] = dict(url=url, uid=uid, colour=colour, place=PLACES[place], alt=alt, n=n)
        pq.write_table(pa.Table.from_pylist(rows), root / f"{shard:05d}.parquet")
        (root / f"{shard:05d}_stats.json").write_text(json.dumps({"count": per_shard}))
    return {"samples": samples, "corrupt": corrupt_keys, "failed": failed_keys}


def make_recap_table(path, planted: dict, every: int = 4) -> list[str]:
    """A Recap-DataComp-1B-style parquet (url, re_caption, org_caption, sha256, key, scores ...) with a
    row for each sample but every `every`-th, plus rows of urls not downloaded. Returns the joined keys."""
    rows, joined = [], []
    for key, s in sorted(planted["samples"].items()):
        if s["n"] % every == every - 1:
            continue
        rows.append(dict(url=s["url"], re_caption=f"a {s['colour']} square image with a grey box at the {s['place']}",
                         org_caption=s["alt"], sha256="0" * 64, key=str(s["n"]), re_clip_score=0.3,
                         org_clip_score=0.2, re_length=12, org_length=3))
        joined.append(key)
    rows += [dict(url=f"http://elsewhere.org/{i}.jpg", re_caption="never downloaded", org_caption="x",
                  sha256="1" * 64, key=str(10 ** 6 + i), re_clip_score=0.1, org_clip_score=0.1, re_length=2,
                  org_length=1) for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return joined


def make_dreamlip_csv(path, planted: dict, skip: int = 5) -> list[str]:
    """A DreamLIP-style CSV keyed by URL with raw, 3 long and 3 short captions per image (every
    `skip`-th sample has no row). Returns the joined keys."""
    joined = []
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Image Path", "raw_caption", "shortIB_captions", "longIB_captions", "shortSV_captions",
                    "longSV_captions", "shortLLA_captions", "longLLA_captions"])
        for key, s in sorted(planted["samples"].items()):
            if s["n"] % skip == skip - 1:
                continue
            c, p = s["colour"], s["place"]
            long = f"The image is {c}. A grey box sits at the {p}. The background is plain {c}."
            w.writerow([s["url"], s["alt"], f"a {c} image", long, f"{c} with a box", long.replace("The", "This"),
                        f"box at the {p}", long])
            joined.append(key)
    return joined


def make_datacompdr(root, planted: dict, per_tar: int = 8, augmentations: int = 3, seed: int = 0) -> dict:
    """MobileCLIP DataCompDR-style tars for the planted samples (no images): per uid url.txt, syn.json
    ({syn_text: [5]}), paug.json, npz (image_emb [A,1536], text_emb [6,1536] float16) and json {uid, sha256}.
    Returns uid → {"syn": [...], "image_emb", "text_emb"} as written."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written, items = {}, sorted(planted["samples"].values(), key=lambda s: s["n"])
    for t in range(0, len(items), per_tar):
        with tarfile.open(root / f"{t // per_tar:08d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for i, s in enumerate(items[t:t + per_tar]):
                key = f"{t + i:09d}"  # DataCompDR keys are its own; the join is on uid
                syn = [f"synthetic caption {k} of a {s['colour']} image" for k in range(5)]
                image_emb = rng.standard_normal((augmentations, 1536)).astype(np.float16)
                text_emb = rng.standard_normal((6, 1536)).astype(np.float16)
                npz = io.BytesIO()
                np.savez(npz, image_emb=image_emb, text_emb=text_emb)
                for ext, data in (("url.txt", s["url"].encode()),
                                  ("syn.json", json.dumps({"syn_text": syn}).encode()),
                                  ("paug.json", json.dumps({"param_aug": [[0, 0, 1, 1]] * augmentations}).encode()),
                                  ("npz", npz.getvalue()), ("json", json.dumps({"uid": s["uid"], "sha256": ""}).encode())):
                    _add(tar, f"{key}.{ext}", data)
                written[s["uid"]] = {"syn": syn, "image_emb": image_emb, "text_emb": text_emb}
    return written
