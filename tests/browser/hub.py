"""Starting a real hub (`iain.app` under uvicorn) in a subprocess for the browser tests.

One start loop for every browser test file: a free port, the child dies with pytest, the hub
is waited for on /api/health (its log tail in the failure message), stopped at the end.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

SERVER_START_S = 30.0
SERVER_STOP_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def die_with_parent() -> None:
    """In the child: SIGTERM when pytest dies, so no server outlives a killed test run."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(url: str, alive: Callable[[], bool], log: Path | None = None) -> None:
    """Until `url` answers 200; fails the test if the process exits or after SERVER_START_S."""
    deadline = time.monotonic() + SERVER_START_S
    while True:
        if not alive():
            pytest.fail(f"{url}: the server exited\n{tail(log) if log else ''}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url}: no answer in {SERVER_START_S:.0f} s\n{tail(log) if log else ''}")
        time.sleep(0.1)


@contextmanager
def running_hub(home: Path, env: dict[str, str]) -> Iterator[str]:
    """`iain.app` served from `home` with `env` (slides already ingested): its URL, while open.

    The hub's output goes to `home`/server.log.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = home / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "--factory", "iain.app:app_from_env"),
                *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
            ],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        try:
            wait_for(url + "/api/health", lambda: server.poll() is None, log_path)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(SERVER_STOP_S)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@contextmanager
def oidc_provider() -> Iterator[str]:
    """A real OpenID Connect provider process (oidc-provider-mock): its issuer URL while it
    runs. Users are set with `PUT {issuer}/users/{sub}` and claims as JSON."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    issuer = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{issuer}/.well-known/openid-configuration", lambda: process.poll() is None)
        yield issuer
    finally:
        process.terminate()
        process.wait(SERVER_STOP_S)
