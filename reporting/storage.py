"""Where report files go: the `reports` storage (local FileSystemStorage or S3).

A generator writes its output to a local temporary file first (so the database is read once,
in bounded memory, whatever the backend), then the file is hashed and saved to the storage in
chunks; S3 gets a multipart upload.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages

CHUNK_BYTES = 1024 * 1024


def report_storage() -> Storage:
    """The storage named `reports` in STORAGES, else the default one."""
    return storages["reports" if "reports" in settings.STORAGES else "default"]


@dataclass(frozen=True)
class StoredFile:
    name: str  # the filename a download gets
    location: str  # the storage's name for it
    content_type: str
    size_bytes: int
    checksum_sha256: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class OutputFile:
    """A report file being written: text or bytes into a temporary file, then `store()`."""

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115  (closed by store())

    @contextmanager
    def text(self) -> Iterator[io.TextIOWrapper]:
        """UTF-8 text (newline='' so the csv module controls line endings)."""
        wrapper = io.TextIOWrapper(self._file, encoding="utf-8", newline="")
        try:
            yield wrapper
        finally:
            wrapper.flush()
            wrapper.detach()  # keep the temporary file open for store()

    def write_bytes(self, data: bytes) -> None:
        self._file.write(data)

    def store(self, *, location: str, name: str, content_type: str) -> StoredFile:
        """Hash the file and save it under `location`, replacing a file already there (a
        retried job, or a document rendered again from the same rows)."""
        try:
            self._file.flush()
            self._file.seek(0)
            digest = hashlib.sha256()
            size = 0
            while chunk := self._file.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
            self._file.seek(0)
            storage = report_storage()
            if storage.exists(location):
                storage.delete(location)
            saved = storage.save(location, File(self._file, name=location))
        finally:
            self._file.close()
        return StoredFile(name, saved, content_type, size, digest.hexdigest())


def open_stored(location: str) -> File:
    """A stored report file, opened for reading in binary."""
    return report_storage().open(location, "rb")
