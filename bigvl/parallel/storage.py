"""Where a run lives: a local directory or a bucket (`gs://bucket/run`), read and written through etils.epath.

A pod's hosts share no disk, so their run directory is a Cloud Storage URL (as big_vision's and
MaxText's `--workdir gs://...`). etils.epath opens `gs://` with fsspec's gcsfs (without
TensorFlow installed); orbax writes its checkpoints there itself (tensorstore's GCS driver).
Every run-directory path goes through `run_path`, never `os.path`: a URL is kept as given.

Objects in a bucket cannot be appended to: `AppendLog` keeps a log's text and rewrites the
object at most every `sync_s` seconds and on `flush` (the trainer flushes before each
checkpoint, so every line of a checkpointed step is stored when the checkpoint is).

The emulator variables the clients read (tests/helpers/gcs_emulator.py sets them):
`STORAGE_EMULATOR_HOST` (gcsfs, google-cloud-storage: etils.epath, tensorboardX),
`TENSORSTORE_GCS_HTTP_URL` + `GOOGLE_AUTH_TOKEN_FOR_TESTING` (orbax's arrays),
`CLOUD_STORAGE_EMULATOR_ENDPOINT` (array_record's reader of gs:// shards).
"""
from __future__ import annotations

import os
import time

from etils import epath


def is_url(path: str | os.PathLike) -> bool:
    """True for `gs://...` (any `scheme://`), False for a local path."""
    return "://" in os.fspath(path)


def run_path(path: str | os.PathLike) -> epath.Path:
    """`path` as an epath.Path: a URL as given, a local path absolute (orbax wants absolute paths)."""
    text = os.fspath(path)
    return epath.Path(text) if is_url(text) else epath.Path(os.path.abspath(os.path.expanduser(text)))


def run_str(path: str | os.PathLike) -> str:
    """`run_path(path)` as text: what a saved config records (`init.workdir`, an eval result's `pretrained`)."""
    return os.fspath(run_path(path))


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes a whole file so a reader sees the old or the new text, never a part.

    A bucket stores an object whole on close; on a local disk the text goes to a temporary
    file, fsynced, that replaces `path`. The parent directory is created if needed.
    """
    path = run_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_url(path):
        path.write_text(text)
        return
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class AppendLog:
    """A text log opened for appending lines: a local file, or an object in a bucket.

    Local: the file is opened in append mode, line-buffered (each line reaches the OS at once).
    URL: the object's current text is read once (a resumed run appends to it), lines are kept in
    memory and the whole object is rewritten on `write` when `sync_s` seconds have passed since the
    last upload, and on `flush` / `close`. Lines written after the last upload are lost on `kill -9`
    (the trainer flushes before each checkpoint, so only lines of steps it trains again are).
    """

    def __init__(self, path: str | os.PathLike, sync_s: float = 30.0):
        self.path, self.sync_s = run_path(path), sync_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._url = is_url(self.path)
        if self._url:
            self._text = [self.path.read_text()] if self.path.exists() else []
            self._dirty, self._synced = False, time.monotonic()
        else:
            self._file = open(self.path, "a", buffering=1)

    def write(self, text: str) -> None:
        """Appends `text` (whole lines, each ending in a newline)."""
        if not self._url:
            self._file.write(text)
            return
        self._text.append(text)
        self._dirty = True
        if time.monotonic() - self._synced >= self.sync_s:
            self.flush()

    def flush(self) -> None:
        """Stores every line written so far (a bucket: one upload of the whole object)."""
        if not self._url:
            self._file.flush()
        elif self._dirty:
            self._text = ["".join(self._text)]
            self.path.write_text(self._text[0])
            self._dirty, self._synced = False, time.monotonic()

    def close(self) -> None:
        self.flush()
        if not self._url:
            self._file.close()
