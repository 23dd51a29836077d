"""The object store behind one small interface: the local filesystem or any S3 endpoint.

Raw uploads are immutable objects under ``core.keys.raw_object_key``
(``raw/uploads/{course}/{document}/v{version}.pdf``).
``put_stream`` copies from a file-like object in fixed-size parts, so a 200 MB upload never
sits in memory whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from core.settings import ObjectStoreSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover

PART_BYTES = 8 * 1024 * 1024


class ObjectStore(Protocol):
    def put_stream(self, key: str, stream: IO[bytes]) -> int:
        """Stores the stream's bytes under ``key``; returns the number of bytes written."""

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def uri(self, key: str) -> str:
        """The key as a URI other engines (Spark, pypdf readers) can open."""


class LocalObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"object key escapes the store root: {key!r}")
        return path

    def put_stream(self, key: str, stream: IO[bytes]) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temp file and rename: readers never see a half-written object.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(stream, out, PART_BYTES)
                written = out.tell()
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return written

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()


def s3_client(settings: ObjectStoreSettings) -> S3Client:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key.get_secret_value(),
        region_name=settings.region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}, connect_timeout=3),
    )


class S3ObjectStore:
    def __init__(self, settings: ObjectStoreSettings, client: S3Client | None = None) -> None:
        self.bucket = settings.bucket
        self.client = client or s3_client(settings)

    def put_stream(self, key: str, stream: IO[bytes]) -> int:
        from boto3.s3.transfer import TransferConfig

        counted = _CountingReader(stream)
        self.client.upload_fileobj(
            counted, self.bucket, key, Config=TransferConfig(multipart_chunksize=PART_BYTES, max_concurrency=2)
        )
        return counted.count

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def uri(self, key: str) -> str:
        return f"s3a://{self.bucket}/{key}"


class _CountingReader:
    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data


def object_store(settings: ObjectStoreSettings) -> ObjectStore:
    """The store the settings select."""
    if settings.mode == "s3":
        return S3ObjectStore(settings)
    return LocalObjectStore(settings.local_root)
