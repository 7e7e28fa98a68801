"""The emulator's File API: resumable uploads, file records, downloads, and image URIs.

Uploads follow the SDK's two steps (``start``, then ``upload, finalize`` to the
URL the start answered with). Requests may then name a file by its URI; the
emulator reads the uploaded bytes back, so the oracle recognises the image as
if it had been sent inline. An ``http(s)`` URI on the loopback interface is
fetched the way Gemini fetches a public URL; anything else (another host,
``gs://``) cannot be reached from here and is refused like an unreachable URL.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Optional

from .wire import EmulatedImage, timestamp

FILE_LIFETIME = datetime.timedelta(hours=48)
FETCH_TIMEOUT = 5.0
MAX_FETCH_BYTES = 20 * 1024 * 1024

FILE_PATH = re.compile(r"/v1[a-z0-9]*/files/(?P<id>[A-Za-z0-9_-]+)$")
"""The path of a file resource (``/v1beta/files/ID``), in URIs and API calls alike."""


class FileAccessError(Exception):
    """A file or URI a request names cannot be used; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class EmulatedFile:
    """A file held by the emulator's File API."""

    id: str
    mime_type: str
    data: bytes
    display_name: Optional[str]
    created: datetime.datetime
    generated: bool = False

    @property
    def name(self) -> str:
        return f"files/{self.id}"

    @property
    def expires(self) -> datetime.datetime:
        return self.created + FILE_LIFETIME


class FileStore:
    """Uploaded and generated files, thread-safe.

    Attributes:
        uploads: files uploaded so far (deleted ones included).
        deleted: files deleted so far.
    """

    def __init__(self) -> None:
        self._files: dict[str, EmulatedFile] = {}
        self._pending: dict[str, tuple[str, Optional[str]]] = {}
        self._lock = threading.Lock()
        self.uploads = 0
        self.deleted = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)

    def start_upload(self, mime_type: str, display_name: Optional[str]) -> str:
        """Opens a resumable upload; returns its id (part of the upload URL)."""
        upload_id = uuid.uuid4().hex
        with self._lock:
            self._pending[upload_id] = (mime_type, display_name)
        return upload_id

    def finish_upload(self, upload_id: str, data: bytes) -> EmulatedFile:
        with self._lock:
            if upload_id not in self._pending:
                raise FileAccessError(404, f"No upload session {upload_id!r}.")
            mime_type, display_name = self._pending.pop(upload_id)
            self.uploads += 1
        return self.add(data, mime_type, display_name)

    def add(self, data: bytes, mime_type: str, display_name: Optional[str] = None,
            *, generated: bool = False) -> EmulatedFile:
        """Stores bytes as a new file (uploaded, or generated such as batch results)."""
        file = EmulatedFile(
            id=uuid.uuid4().hex[:16], mime_type=mime_type, data=data, display_name=display_name,
            created=datetime.datetime.now(datetime.timezone.utc), generated=generated,
        )
        with self._lock:
            self._files[file.id] = file
        return file

    def get(self, file_id: str) -> EmulatedFile:
        with self._lock:
            file = self._files.get(file_id)
        if file is None or file.expires < datetime.datetime.now(datetime.timezone.utc):
            raise FileAccessError(
                403, f"You do not have permission to access the File {file_id} or it may not exist.")
        return file

    def delete(self, file_id: str) -> None:
        self.get(file_id)
        with self._lock:
            self._files.pop(file_id, None)
            self.deleted += 1

    def record(self, file: EmulatedFile, base_url: str) -> dict:
        """The File resource as the API returns it."""
        body = {
            "name": file.name,
            "mimeType": file.mime_type,
            "sizeBytes": str(len(file.data)),
            "createTime": timestamp(file.created),
            "updateTime": timestamp(file.created),
            "expirationTime": timestamp(file.expires),
            "uri": f"{base_url}/v1beta/{file.name}",
            "state": "ACTIVE",
            "source": "GENERATED" if file.generated else "UPLOADED",
        }
        if file.display_name:
            body["displayName"] = file.display_name
        if file.generated:
            body["downloadUri"] = f"{base_url}/v1beta/{file.name}:download?alt=media"
        return body

    def resolve(self, image: EmulatedImage) -> EmulatedImage:
        """An image part with its bytes: read from the store (File API URI) or fetched (loopback URL).

        Raises:
            FileAccessError: the file does not exist (any more), or the URI cannot be fetched.
        """
        if image.inline or not image.uri:
            return image
        uri = image.uri
        parsed = urllib.parse.urlparse(uri)
        match = FILE_PATH.search(parsed.path)
        if parsed.scheme in ("http", "https") and match:
            file = self.get(match["id"])
            return EmulatedImage(image.mime_type or file.mime_type, data=file.data, uri=uri)
        if parsed.scheme in ("http", "https") and _is_loopback(parsed.hostname):
            return EmulatedImage(image.mime_type, data=_fetch(uri), uri=uri)
        raise FileAccessError(400, f"Cannot fetch content from the provided URL: {uri}")


def _is_loopback(host: Optional[str]) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _fetch(uri: str) -> bytes:
    try:
        with urllib.request.urlopen(uri, timeout=FETCH_TIMEOUT) as response:
            data = response.read(MAX_FETCH_BYTES + 1)
    except (urllib.error.URLError, OSError) as e:
        raise FileAccessError(400, f"Cannot fetch content from the provided URL: {uri} ({e})") from None
    if len(data) > MAX_FETCH_BYTES:
        raise FileAccessError(400, f"The content at {uri} is too large.")
    return data
