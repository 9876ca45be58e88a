"""`iain upload`: sends a slide to a hub through the resumable upload API.

The upload id is remembered in a small state file (under $XDG_STATE_HOME/iain, keyed by
hub, path and the files' sizes and modification times), so running the same command again
after an interruption asks the hub which parts it already has and sends only the rest."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

RETRIES = 4
# Completion copies the slide down, hashes and validates it: minutes for a large slide.
COMPLETE_TIMEOUT_S = 3600.0


class UploadFailed(Exception):
    """The hub refused the upload, or could not be reached; the message says why."""


@dataclass(frozen=True)
class LocalFile:
    path: Path  # on this machine
    relative: str  # inside the upload
    size: int


def slide_files(path: Path) -> list[LocalFile]:
    """The files to send for `path`: the file itself, an MRXS file with its data folder, or
    every file of a folder (a DICOM series), with paths relative to the slide's folder."""
    path = path.resolve()
    if path.is_dir():
        root, found = path, [p for p in sorted(path.rglob("*")) if p.is_file()]
    elif path.is_file():
        root, found = path.parent, [path]
        data_dir = path.with_suffix("")
        if path.suffix.lower() == ".mrxs" and data_dir.is_dir():
            found += [p for p in sorted(data_dir.rglob("*")) if p.is_file()]
    else:
        raise UploadFailed(f"{path}: no such file or folder")
    files = [
        LocalFile(p, p.relative_to(root).as_posix(), p.stat().st_size)
        for p in found
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    if not files:
        raise UploadFailed(f"{path}: no files to upload")
    return files


def sha256_of(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


def state_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "iain" / "uploads.json"


def _state_key(hub: str, path: Path, files: list[LocalFile]) -> str:
    signature = hashlib.sha256(
        json.dumps(
            [[f.relative, f.size, f.path.stat().st_mtime_ns] for f in files], sort_keys=True
        ).encode()
    ).hexdigest()[:16]
    return f"{hub.rstrip('/')} {path.resolve()} {signature}"


def _load_state() -> dict[str, str]:
    try:
        data = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _save_state(state: dict[str, str]) -> None:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:200]


class Client:
    def __init__(self, hub: str, *, token: str | None = None, timeout_s: float = 120.0) -> None:
        # An API token (`iain tokens create`): the hub answers 401 without one.
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=hub.rstrip("/"), timeout=timeout_s, headers=headers)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Sends a request, retrying dropped connections and 503s with a growing pause."""
        for attempt in range(RETRIES + 1):
            try:
                response = self.http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt == RETRIES:
                    raise UploadFailed(f"hub unreachable: {exc}") from exc
            else:
                if response.status_code != 503 or attempt == RETRIES:
                    return response
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def ok(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self.request(method, url, **kwargs)
        if response.status_code >= 400:
            raise UploadFailed(f"{response.status_code}: {_detail(response)}")
        return response.json() if response.content else None


@dataclass
class Report:
    upload_id: str
    parts_total: int
    parts_already: int  # stored before this run: resumed
    slide: dict[str, Any]


def upload(
    hub: str,
    path: Path,
    centre: str,
    *,
    name: str = "",
    on_start: Callable[[str, int, int, int], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    on_hashing: Callable[[int], None] | None = None,
    jobs: int = 4,
    token: str | None = None,
) -> Report:
    """Uploads (or resumes uploading) the slide at `path`; returns the new slide's details.
    on_start(upload_id, parts_total, parts_already, bytes_left) is called before sending."""
    files = slide_files(path)
    client = Client(hub, token=token)
    key = _state_key(hub, path, files)
    saved = _load_state()
    state: dict[str, Any] | None = None
    if key in saved:
        response = client.request("GET", f"/api/uploads/{saved[key]}")
        if response.status_code == 200 and response.json()["status"] in ("open", "complete"):
            state = response.json()
    if state is None:
        hashes = [sha256_of(f.path, on_hashing) for f in files]
        body = {
            "centre": centre,
            "name": name or path.name,
            "files": [
                {"path": f.relative, "size": f.size, "sha256": h}
                for f, h in zip(files, hashes, strict=True)
            ],
        }
        state = client.ok("POST", "/api/uploads", json=body)
        assert state is not None
        saved[key] = state["id"]
        _save_state(saved)
    upload_id, part_size = state["id"], int(state["part_size"])
    todo: list[tuple[int, int]] = []
    total = already = left = 0
    for f in state["files"]:
        stored = set(f["stored"])
        total += f["parts"]
        already += len(stored)
        for n in range(1, f["parts"] + 1):
            if n not in stored:
                todo.append((f["index"], n))
                left += min(part_size, f["size"] - (n - 1) * part_size)
    if on_start is not None:
        on_start(upload_id, total, already, left)
    if state["status"] == "open":

        def send(index: int, number: int) -> int:
            with files[index].path.open("rb") as fh:
                fh.seek((number - 1) * part_size)
                data = fh.read(part_size)
            client.ok(
                "PUT",
                f"/api/uploads/{upload_id}/files/{index}/parts/{number}",
                content=data,
                headers={
                    "X-Part-Sha256": hashlib.sha256(data).hexdigest(),
                    "Content-Type": "application/octet-stream",
                },
            )
            return len(data)

        # A few parts in flight hide the round trips of a distant hub; each holds one part
        # in memory here and on the hub.
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            for sent in pool.map(lambda job: send(*job), todo):
                if on_bytes is not None:
                    on_bytes(sent)
    try:
        slide = client.ok("POST", f"/api/uploads/{upload_id}/complete", timeout=COMPLETE_TIMEOUT_S)
    finally:
        # Done or refused for good: a later run starts afresh. Unreachable: keep it to resume.
        try:
            response = client.request("GET", f"/api/uploads/{upload_id}")
        except UploadFailed:
            pass
        else:
            if response.status_code != 200 or response.json()["status"] != "open":
                saved = _load_state()
                saved.pop(key, None)
                _save_state(saved)
    return Report(upload_id, total, already, slide)
