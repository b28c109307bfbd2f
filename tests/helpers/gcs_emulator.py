"""A local Cloud Storage emulator for the tests: `gcp-storage-emulator` (PyPI, the `test` extra) in a process,
with the generation preconditions tensorstore relies on added (tests/helpers/gcs_emulator_server.py).

    with GcsEmulator() as gcs:       # serves http://127.0.0.1:PORT with bucket `test-bucket`, in memory
        env = gcs.env                # the variables each client reads to go there instead of Google
        gcs.apply(monkeypatch)       # ... set in this process (fsspec's cached gcsfs instances dropped)

What points where (each checked with the installed versions, see docs/results/gcs.md):
  STORAGE_EMULATOR_HOST            gcsfs (etils.epath's gs:// backend) and google-cloud-storage (tensorboardX)
  TENSORSTORE_GCS_HTTP_URL         tensorstore's gcs kvstore: orbax's arrays and its OCDBT files
  GOOGLE_AUTH_TOKEN_FOR_TESTING    tensorstore: a fixed bearer token instead of looking for credentials
  CLOUD_STORAGE_EMULATOR_ENDPOINT  google-cloud-cpp: array_record's GcsReader of gs:// shards
  GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false  gcsfs: no bucket-type lookup (the emulator has no control plane)
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time

BUCKET = "test-bucket"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GcsEmulator:
    """Starts the emulator in memory with one bucket (`python -m tests.helpers.gcs_emulator_server`); stops it on exit."""

    def __init__(self, bucket: str = BUCKET, linger: bool = False):
        """linger: leave the server running on exit; it stops when this process does (for clients that
        upload again when garbage-collected, as tensorboardX's GCS writer does at interpreter exit)."""
        self.bucket, self.port, self.linger = bucket, _free_port(), linger
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {"STORAGE_EMULATOR_HOST": self.url, "TENSORSTORE_GCS_HTTP_URL": self.url,
                    "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator", "CLOUD_STORAGE_EMULATOR_ENDPOINT": self.url,
                    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
        self._proc = None

    def __enter__(self) -> "GcsEmulator":
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.gcs_emulator_server", "--port", str(self.port), "--bucket", self.bucket,
             "--parent", str(os.getpid())],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"gcp-storage-emulator did not start on port {self.port}")
                time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if self._proc is not None and self._proc.poll() is None and not self.linger:
            self._proc.terminate()
            self._proc.wait(timeout=10)

    def apply(self, monkeypatch) -> None:
        """Sets `env` in this process and drops gcsfs instances made before (they would keep their endpoint)."""
        import gcsfs  # the gcs extra
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        gcsfs.GCSFileSystem.clear_instance_cache()
