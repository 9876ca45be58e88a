"""Notifications by e-mail, from a step of a consultation to a real SMTP server process
(aiosmtpd on 127.0.0.1): what the mail says, what it never says, sent once."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import select

from exchange.core.models import Notification
from exchange.live.mail import MailConfig, Mailer
from exchange.live.notifications import Outbox
from iain.app import create_app
from iain.settings import Settings
from tests.hub import auth_headers, ingest
from tests.testdata import sample

SVS = "aperio/CMU-1-Small-Region.svs"


class Inbox:
    def __init__(self) -> None:
        self.received: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((list(envelope.rcpt_tos), envelope.content.decode("utf-8")))
        return "250 OK"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), _port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_the_addressee_is_mailed_once_with_a_link_and_no_patient_data(
    settings: Settings, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    slide_id = ingest(settings, sample(SVS), "lille")
    lille = auth_headers(settings, "path.lille", centre="lille")
    rouen = auth_headers(settings, "expert.rouen", centre="rouen")
    with TestClient(create_app(settings)) as client:
        put = client.put(
            "/api/notifications/settings", json={"email": "expert@chb.example"}, headers=rouen
        )
        assert put.status_code == 200
        body = {
            "slide_ids": [slide_id],
            "question": "Ewing sarcoma? CD99 diffuse",
            "initial_diagnosis": "Small round cell tumour",
            "addressee": "expert.rouen",
            "consent": "informed_consent",
            "case_id": None,
        }
        made = client.post("/api/consultations", json=body, headers=lille).json()
        sent = client.post(
            f"/api/consultations/{made['id']}/submit", json={"version": 1}, headers=lille
        )
        assert sent.status_code == 200, sent.text
        hub = client.app.state.hub  # type: ignore[attr-defined]
        outbox = Outbox(
            hub.db,
            Mailer(MailConfig(host="127.0.0.1", port=port, starttls=False)),
            "https://iain.example",
        )
        # Two hub processes' outboxes running at once send it once.
        assert outbox.send_pending() == 1
        assert outbox.send_pending() == 0
    assert len(inbox.received) == 1
    recipients, content = inbox.received[0]
    assert recipients == ["expert@chb.example"]
    assert f"https://iain.example/consultations/{made['id']}" in content
    for secret in ("Ewing", "CD99", "round cell", slide_id, "CMU-1"):
        assert secret not in content
    with hub.db.session() as session:
        states = [n.mail_state for n in session.scalars(select(Notification))]
    assert states == ["sent"]


def test_an_unreachable_mail_server_is_retried_then_given_up(settings: Settings) -> None:
    slide_id = ingest(settings, sample(SVS), "lille")
    lille = auth_headers(settings, "path.lille", centre="lille")
    rouen = auth_headers(settings, "expert.rouen", centre="rouen")
    with TestClient(create_app(settings)) as client:
        client.put("/api/notifications/settings", json={"email": "e@x.example"}, headers=rouen)
        body = {
            "slide_ids": [slide_id],
            "question": "?",
            "initial_diagnosis": "?",
            "addressee": "expert.rouen",
            "consent": "non_opposition",
        }
        made = client.post("/api/consultations", json=body, headers=lille).json()
        client.post(f"/api/consultations/{made['id']}/submit", json={"version": 1}, headers=lille)
        hub = client.app.state.hub  # type: ignore[attr-defined]
        nobody = Mailer(MailConfig(host="127.0.0.1", port=_port(), starttls=False, timeout_s=2))
        outbox = Outbox(hub.db, nobody)
        for _ in range(5):
            assert outbox.send_pending() == 0  # never raises: the hub keeps serving
        with hub.db.session() as session:
            row = session.scalars(select(Notification)).one()
        assert (row.mail_state, row.mail_attempts) == ("failed", 5)
        # The in-app notification is there all the same.
        assert client.get("/api/notifications", headers=rouen).json()["unread"] == 1
