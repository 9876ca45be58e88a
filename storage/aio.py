"""Asynchronous byte-range reads from S3, for the tile server's hot path.

A stored tile that is served as it is costs one ranged GET and nothing else, so the cost of
that GET is the cost of the tile. Through the MinIO client it takes ~0.65 ms of CPU (each
request signed with SigV4, then urllib3 and a thread hop); an aiohttp GET on a presigned URL
takes ~0.12 ms at the same concurrency, inside the server's event loop. A presigned URL
does not cover the Range header, so one URL per object serves every range of it until it
expires; URLs are renewed well before that."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp
from yarl import URL

from storage.base import InvalidRange, ObjectNotFound, StorageError
from storage.s3 import S3Store

URL_LIFETIME_S = 3600
# Renew when less than this is left, so no request ever carries an expired URL.
URL_MARGIN_S = 600


class AsyncRangeReader:
    """Ranged GETs of objects of one S3 bucket, on presigned URLs, from one event loop."""

    def __init__(self, store: S3Store, *, max_connections: int = 64, timeout_s: float = 30) -> None:
        self.store = store
        self.max_connections = max_connections
        self.timeout_s = timeout_s
        self._urls: dict[str, tuple[URL, float]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.requests: Counter[str] = Counter()

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a session belongs to the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                auto_decompress=False,
            )
        return self._session

    async def _url(self, key: str) -> URL:
        now = time.monotonic()
        cached = self._urls.get(key)
        if cached is not None and cached[1] - now > URL_MARGIN_S:
            return cached[0]
        # Signing is local, but the first one asks the server for the bucket's region.
        signed = await asyncio.to_thread(self.store.presign_get, key, URL_LIFETIME_S)
        # Already signed and quoted: re-quoting it would break the signature.
        url = URL(signed, encoded=True)
        self._urls[key] = (url, now + URL_LIFETIME_S)
        return url

    async def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0:
            raise InvalidRange(f"invalid range {offset}+{length} of {key!r}", key)
        url = await self._url(key)
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        self.requests["GET"] += 1
        try:
            async with self._client().get(url, headers=headers) as resp:
                if resp.status == 404:
                    raise ObjectNotFound(f"no object {key!r}", key)
                if resp.status == 403:
                    # An expired or revoked URL: forget it, the next call signs a new one.
                    self._urls.pop(key, None)
                if resp.status != 206:
                    raise StorageError(f"range GET of {key!r} answered {resp.status}", key)
                data = await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise StorageError(f"range GET of {key!r} failed: {exc!r}", key) from exc
        if len(data) != length:
            raise StorageError(f"range GET of {key!r}: {len(data)} bytes, wanted {length}", key)
        return data

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
