"""File API uploads, made once per image and remembered until they expire.

With ``image_transport="file_api"`` each prepared image is uploaded once and
requests refer to it by URI. The upload is remembered in the dataset's
FiftyOne execution store under a hash of the endpoint and the image bytes, with
the file's expiry as its time to live, so another task or a rerun on the same
dataset (and the same image size) sends the URI instead of the image again.
A remembered file is checked (``files.get``) before a run first uses it, so a
file deleted elsewhere is uploaded again rather than failing requests. Within
a run, the URIs of the last :data:`MEMO_SIZE` images are kept in memory; the
execution store's entries expire with their files, so neither grows without bound.
:func:`delete_uploaded_files` removes them all on request.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import hashlib
import os
from typing import Optional

import fiftyone as fo
from fiftyone.operators.store import ExecutionStore

from .gemini import GeminiClient
from .messages import GeminiError, UploadedFile
from .sync import run_sync

STORE_NAME = "gemini_annotate_uploads"
REUSE_MARGIN = datetime.timedelta(hours=1)
"""A remembered file that expires sooner than this is uploaded again."""

DEFAULT_ENDPOINT = "https://generativelanguage.googleapis.com"

MEMO_SIZE = 4096
"""URIs a run keeps in memory, the most recently used (an image sent again, a reference
image in every request, needs no store lookup); older ones are looked up again."""


def upload_endpoint(base_url: Optional[str]) -> str:
    """The endpoint files are uploaded to: uploads are only valid there."""
    return (base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or DEFAULT_ENDPOINT).rstrip("/")


def _store(dataset: fo.Dataset) -> ExecutionStore:
    return ExecutionStore.create(STORE_NAME, dataset_id=dataset._doc.id)


class UploadCache:
    """The files uploaded for a dataset's images, shared by every run on it.

    Args:
        dataset: the dataset whose execution store remembers the uploads.
        endpoint: the endpoint uploads go to (see :func:`upload_endpoint`).
        memo_size: URIs kept in memory, the most recently used.

    Attributes:
        uploaded: files uploaded by this cache.
        reused: images sent by the URI of an earlier upload.
    """

    def __init__(self, dataset: fo.Dataset, endpoint: str, *, memo_size: int = MEMO_SIZE):
        self._store = _store(dataset)
        self._endpoint = endpoint
        self._memo_size = memo_size
        self._in_flight: dict[str, asyncio.Future] = {}
        self._known: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.uploaded = 0
        self.reused = 0

    def key(self, data: bytes) -> str:
        """The cache key of some image bytes at this endpoint."""
        digest = hashlib.sha256(data)
        digest.update(self._endpoint.encode())
        return digest.hexdigest()

    async def uri_for(self, client: GeminiClient, data: bytes, mime_type: str,
                      display_name: Optional[str] = None) -> str:
        """The File API URI of these bytes, uploading them only if no live upload is known.

        Concurrent requests for the same bytes share one upload.
        """
        key = self.key(data)
        uri = self._known.get(key)
        if uri is not None:
            self._known.move_to_end(key)
            return uri
        pending = self._in_flight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._resolve(client, key, data, mime_type, display_name))
            self._in_flight[key] = pending
            pending.add_done_callback(lambda done, key=key: self._settle(key, done))
        return await asyncio.shield(pending)

    def _settle(self, key: str, done: asyncio.Future) -> None:
        """Moves a finished lookup out of the in-flight ones: its URI into the memo, or
        nothing when it failed (a later request may try again)."""
        self._in_flight.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        self._known[key] = done.result()
        while len(self._known) > self._memo_size:
            self._known.popitem(last=False)

    async def _resolve(self, client: GeminiClient, key: str, data: bytes, mime_type: str,
                       display_name: Optional[str]) -> str:
        remembered = self._store.get(key)
        if remembered and _expires(remembered) > _now() + REUSE_MARGIN:
            try:
                live = await client.get_file(remembered["name"])
            except GeminiError as e:
                if e.fatal and e.reason != "FILE_NOT_FOUND":
                    raise
                live = None
            if live is not None and live.state == "ACTIVE":
                self.reused += 1
                return live.uri
        uploaded = await client.upload_file(data, mime_type, display_name=display_name)
        self.uploaded += 1
        self._remember(key, uploaded)
        return uploaded.uri

    def _remember(self, key: str, file: UploadedFile) -> None:
        expires = file.expires_at or (_now() + datetime.timedelta(hours=47))
        ttl = max(60, int((expires - _now()).total_seconds()))
        self._store.set_cache(key, {"name": file.name, "uri": file.uri, "mime_type": file.mime_type,
                                    "expires": expires.isoformat()}, ttl=ttl)


def remembered_uploads(dataset: fo.Dataset) -> list[dict]:
    """The uploads remembered for a dataset (name, uri, mime_type, expires)."""
    store = _store(dataset)
    records = (store.get(key) for key in store.list_keys())
    return [r for r in records if r]


async def _delete_all(dataset: fo.Dataset, client: GeminiClient) -> int:
    store = _store(dataset)
    deleted = 0
    for key in store.list_keys():
        record = store.get(key)
        if record:
            try:
                await client.delete_file(record["name"])
                deleted += 1
            except GeminiError as e:
                if e.reason != "FILE_NOT_FOUND":
                    raise
        store.delete(key)
    return deleted


def delete_uploaded_files(samples: fo.core.collections.SampleCollection, *, model: str = "gemini-3-flash-preview",
                          api_key: Optional[str] = None, base_url: Optional[str] = None) -> int:
    """Deletes every file uploaded for a dataset's images from the File API, and forgets them.

    Files expire by themselves after 48 hours; this frees them (and the
    project's File API storage) at once.

    Returns:
        the number of files deleted (files already gone are only forgotten).
    """

    async def run() -> int:
        async with GeminiClient(model=model, api_key=api_key, base_url=base_url) as client:
            return await _delete_all(samples._dataset, client)

    return run_sync(run)


def _expires(record: dict) -> datetime.datetime:
    try:
        return datetime.datetime.fromisoformat(record["expires"])
    except (KeyError, TypeError, ValueError):
        return _now()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
