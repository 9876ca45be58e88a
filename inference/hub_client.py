"""The hub over HTTPS, as a worker's job source (inference.protocol.JobSource).

Outbound only: a worker behind a hospital firewall that lets HTTPS out needs nothing
else. One keep-alive connection pool (httpx, thread-safe) serves the claim loop, the
heartbeats and the tile readers. Network errors are retried with a short back-off, for
at most a lease's length; a 409 is the lease lost (LeaseLost), any other 4xx an error of
this worker (HubRefused, with the hub's message)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from inference.protocol import Beat, Claim, LeaseLost

T = TypeVar("T")
RETRY_FOR_S = 30.0


class HubRefused(Exception):
    """The hub answered 4xx (not 409): the message is its own."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the hub answered {status}: {message}")
        self.status = status


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail or response.text[:500])


class HubClient:
    def __init__(
        self,
        hub_url: str,
        token: str,
        *,
        timeout_s: float = 60.0,
        connections: int = 16,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base = hub_url.rstrip("/")
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.http = httpx.Client(
            base_url=self.base,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=limits,
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        deadline = time.monotonic() + RETRY_FOR_S
        delay = 0.2
        while True:
            try:
                response = send()
            except httpx.TransportError:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if response.status_code >= 500 and time.monotonic() + delay <= deadline:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if response.status_code == 409:
                raise LeaseLost(_detail(response))
            if response.status_code >= 400:
                raise HubRefused(response.status_code, _detail(response))
            return response

    def _lease(self, claim: Claim) -> dict[str, str]:
        return {"X-Lease": claim.lease}

    @staticmethod
    def _bearer(capability: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {capability}"}

    # -- the protocol ---------------------------------------------------------------------

    def claim(self, worker: str, wait_s: float) -> Claim | None:
        response = self._call(
            lambda: self.http.post(
                "/api/worker/claim",
                json={"worker": worker, "wait_s": wait_s},
                timeout=wait_s + 30.0,
            )
        )
        if response.status_code == 204:
            return None
        return Claim.from_json(response.json())

    def heartbeat(self, claim: Claim, done: int, total: int) -> Beat:
        body = {"lease": claim.lease, "done": done, "total": total}
        data = self._call(
            lambda: self.http.post(f"/api/worker/jobs/{claim.job_id}/heartbeat", json=body)
        ).json()
        return Beat(cancel=bool(data["cancel"]), capability=data.get("capability"))

    def model_bytes(self, claim: Claim) -> bytes:
        url, headers = claim.spec.url, self._lease(claim)
        return self._call(lambda: self.http.get(url, headers=headers)).content

    def dzi(self, claim: Claim, capability: str) -> str:
        return self._call(
            lambda: self.http.get(claim.slide.dzi, headers=self._bearer(capability))
        ).text

    def thumbnail(self, claim: Claim, capability: str, size: int) -> bytes:
        return self._call(
            lambda: self.http.get(
                claim.slide.thumbnail, params={"size": size}, headers=self._bearer(capability)
            )
        ).content

    def tile(self, claim: Claim, capability: str, level: int, col: int, row: int) -> bytes:
        path = claim.slide.tiles.format(level=level, col=col, row=row)
        return self._call(lambda: self.http.get(path, headers=self._bearer(capability))).content

    def upload(
        self, claim: Claim, name: str, kind: str, body: bytes, params: dict[str, str]
    ) -> None:
        query: dict[str, Any] = {"kind": kind, **params}
        self._call(
            lambda: self.http.put(
                f"{claim.results}/{name}", content=body, params=query, headers=self._lease(claim)
            )
        )

    def upload_artefact(self, claim: Claim, program: bytes) -> None:
        headers = self._lease(claim)
        self._call(
            lambda: self.http.put(
                f"/api/worker/jobs/{claim.job_id}/artefact", content=program, headers=headers
            )
        )

    def complete(
        self,
        claim: Claim,
        results: list[str],
        summary: dict[str, Any],
        provenance: dict[str, Any],
        manifest: dict[str, Any] | None = None,
    ) -> None:
        body = {
            "lease": claim.lease,
            "results": results,
            "summary": summary,
            "provenance": provenance,
            "manifest": manifest,
        }
        self._call(lambda: self.http.post(f"/api/worker/jobs/{claim.job_id}/complete", json=body))

    def fail(self, claim: Claim, reason: str) -> None:
        body = {"lease": claim.lease, "reason": reason[:4000] or "no reason"}
        self._call(lambda: self.http.post(f"/api/worker/jobs/{claim.job_id}/fail", json=body))

    def release(self, claim: Claim) -> None:
        self._call(
            lambda: self.http.post(
                f"/api/worker/jobs/{claim.job_id}/release", json={"lease": claim.lease}
            )
        )
