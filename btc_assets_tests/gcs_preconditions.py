"""gcp-storage-emulator with GCS's generation preconditions: ``python -m`` this module with the
emulator's own arguments.

The emulator ignores ``ifGenerationMatch`` (measured: an upload with a stale generation
overwrites), so a test of the lake's commit race against it would pass whatever the lake did.
This launcher puts the real service's rule in front of the emulator's upload handler: an
upload whose ``ifGenerationMatch`` differs from the object's current generation (0: absent)
is answered ``412 conditionNotMet`` with GCS's error body, and nothing is stored. Everything
else is the emulator's. ``test_gcs_lake.py`` checks the rule itself with Google's client.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from gcp_storage_emulator import server
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_LOCK = threading.Lock()  # the emulator serves one request at a time; this keeps it so


def _object_name(request: Any) -> str | None:
    if "name" in request.query:
        return str(request.query["name"][0])
    data = request.data or {}
    meta = data.get("meta") if isinstance(data, dict) else None
    if isinstance(meta, dict) and meta.get("name"):
        return str(meta["name"])
    return str(data["name"]) if isinstance(data, dict) and data.get("name") else None


def _generation(storage: Any, bucket: str, name: str) -> int:
    try:
        return int(storage.get_file_obj(bucket, name)["generation"])
    except NotFound:
        return 0


def _guarded(upload: Callable[..., Any]) -> Callable[..., Any]:
    def handler(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        wanted = request.query.get("ifGenerationMatch")
        with _LOCK:
            if wanted and "upload_id" not in request.query:
                name = _object_name(request)
                bucket = request.params["bucket_name"]
                if name is not None and _generation(storage, bucket, name) != int(wanted[0]):
                    response.status = HTTPStatus.PRECONDITION_FAILED
                    response.json({"error": {
                        "code": 412,
                        "message": "At least one of the pre-conditions you specified did "
                                   "not hold.",
                        "errors": [{"message": "At least one of the pre-conditions you "
                                               "specified did not hold.",
                                    "domain": "global", "reason": "conditionNotMet",
                                    "locationType": "header", "location": "If-Match"}],
                    }})  # fmt: skip
                    return None
            return upload(request, response, storage, *args, **kwargs)

    return handler


def install() -> None:
    """Route every upload of the emulator through the precondition check."""
    guarded = _guarded(objects.insert)
    for _pattern, methods in server.HANDLERS:
        for method, handler in list(methods.items()):
            if handler is objects.insert:
                methods[method] = guarded


SKIP_INDEX = "--skip-index"


def skip_index() -> None:
    """For benchmarks with ``-M`` (in memory): the emulator serialises its whole object index
    to JSON after every write, so an upload costs time in proportion to the objects stored
    (90 ms at 5,000); in memory the live index is the dict itself, so skip that copy."""
    from gcp_storage_emulator.storage import Storage

    Storage._write_config_to_file = lambda self: None  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    args = sys.argv[1:]
    if SKIP_INDEX in args:
        args.remove(SKIP_INDEX)
        skip_index()
    main(args)
