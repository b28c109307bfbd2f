"""`gcp-storage-emulator` with Cloud Storage's generation preconditions: `python -m tests.helpers.gcs_emulator_server
--port P --bucket B` (started by tests/helpers/gcs_emulator.py).

The emulator (2026.7.19) ignores `ifGenerationMatch` / `ifGenerationNotMatch` and sends no
`x-goog-generation` header with an object's bytes. tensorstore's GCS driver needs both: orbax's
OCDBT manifest is read and rewritten with conditional requests, and a read without the header
fails with "Malformed StorageGeneration". What is added here is what the JSON API documents
(https://cloud.google.com/storage/docs/json_api/v1/objects/get, .../insert, request preconditions):
a failed `ifGenerationMatch` is 412, a read whose `ifGenerationNotMatch` equals the current
generation is 304, `ifGenerationMatch=0` means "must not exist", and a download carries
`x-goog-generation`. The server is single-threaded (http.server.HTTPServer), so a check and the
write it guards do not interleave with other requests.
"""
from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from http import HTTPStatus

from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects


def _current_generation(request, storage, name: str | None) -> str:
    """The object's generation, "0" when it does not exist (the API's meaning of 0)."""
    try:
        return str(storage.get_file_obj(request.params["bucket_name"], name)["generation"])
    except (NotFound, KeyError, TypeError):
        return "0"


def _failed_precondition(request, storage, name: str | None, read: bool) -> HTTPStatus | None:
    """The status that answers the request instead of the handler, or None when its preconditions hold."""
    match, not_match = request.query.get("ifGenerationMatch"), request.query.get("ifGenerationNotMatch")
    if not (match or not_match):
        return None
    current = _current_generation(request, storage, name)
    if read and current == "0":
        return None  # a missing object: the handler's own 404
    if match and match[0] != current:
        return HTTPStatus.PRECONDITION_FAILED
    if not_match and not_match[0] == current:
        return HTTPStatus.NOT_MODIFIED if read else HTTPStatus.PRECONDITION_FAILED
    return None


def _upload_name(request) -> str | None:
    if request.query.get("name"):
        return request.query["name"][0]
    data = request.data if isinstance(request.data, dict) else {}
    return (data.get("meta") or {}).get("name")


def insert(request, response, storage, *args, **kwargs):
    status = _failed_precondition(request, storage, _upload_name(request), read=False)
    if status is not None:
        response.status = status
        return None
    return objects.insert(request, response, storage, *args, **kwargs)


def download(request, response, storage, *args, **kwargs):
    name = request.params.get("object_id")
    status = _failed_precondition(request, storage, name, read=True)
    if status is not None:
        response.status = status
        return None
    generation = _current_generation(request, storage, name)
    if generation != "0":
        response["x-goog-generation"] = generation
        response["x-goog-metageneration"] = "1"
    return objects.download(request, response, storage, *args, **kwargs)


def get(request, response, storage, *args, **kwargs):
    if request.query.get("alt") and request.query["alt"][0] == "media":
        return download(request, response, storage, *args, **kwargs)
    status = _failed_precondition(request, storage, request.params.get("object_id"), read=True)
    if status is not None:
        response.status = status
        return None
    return objects.get(request, response, storage, *args, **kwargs)


REPLACE = {objects.insert: insert, objects.download: download, objects.get: get}


def _exit_with(pid: int) -> None:
    """Ends this server once process `pid` has exited (a test process that left it running)."""
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--parent", type=int, default=0, help="exit once this process is gone (0: never)")
    args = parser.parse_args()
    if args.parent:
        threading.Thread(target=_exit_with, args=(args.parent,), daemon=True).start()
    logging.basicConfig(level=logging.WARNING)
    server.HANDLERS = tuple((regex, {method: REPLACE.get(fn, fn) for method, fn in handlers.items()})
                            for regex, handlers in server.HANDLERS)
    server.create_server(args.host, args.port, in_memory=True, default_bucket=args.bucket).run()


if __name__ == "__main__":
    main()
