"""The embedded default's inference worker (`iain demo`, `iain serve` with
IAIN_INFERENCE_WORKER=true): one CPU worker in a child process, speaking the same HTTP
protocol as any GPU node — one code path, and a crash there never takes the hub down.

Its service account gets a fresh worker-scoped token at each start (the previous ones are
revoked); the token reaches the child in its environment, never on its command line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime

from sqlalchemy import select, update

from exchange.core.db import Database
from exchange.core.models import ApiToken, User
from exchange.core.principal import Role, Scope
from exchange.identity.accounts import Identities
from iain.settings import Settings

ACCOUNT = "svc.embedded-worker"
RESTART_AFTER_S = 5.0


def hub_url(host: str, port: int) -> str:
    """Where the child reaches the hub: loopback when the hub listens everywhere."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def fresh_token(db: Database) -> str:
    identities = Identities(db)
    if identities.user(ACCOUNT) is None:
        centre = db.centres()[0].code
        identities.add_user(ACCOUNT, centre, [Role.SERVICE], display_name="embedded worker")
    with db.session() as session, session.begin():
        user_id = session.scalar(select(User.id).where(User.username == ACCOUNT))
        session.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    scopes = [Scope.WORKER, Scope.ALL_CENTRES]  # the demo's one worker serves every centre
    return identities.create_token(ACCOUNT, name="embedded", scopes=scopes)[1]


class EmbeddedWorker:
    """Starts the worker process, restarts it if it dies, stops it with the hub."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url
        self._child: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="worker", daemon=True)

    def start(self) -> None:
        token = fresh_token(Database.open(self.settings.database_url))
        self._env = {**os.environ, "IAIN_TOKEN": token}
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [
            sys.executable, "-m", "iain.cli", "worker",
            "--hub", self.url,
            "--device", "cpu",
            "--name", "embedded",
            "--cache-dir", str(self.settings.home / "worker"),
        ]  # fmt: skip
        return subprocess.Popen(command, env=self._env)

    def _supervise(self) -> None:
        while not self._stop.is_set():
            self._child = self._spawn()
            while self._child.poll() is None:
                if self._stop.wait(0.5):
                    return
            self._stop.wait(RESTART_AFTER_S)

    def stop(self) -> None:
        self._stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()  # SIGTERM: the worker hands its job back
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        self._thread.join(5)
