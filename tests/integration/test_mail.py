"""The hub's e-mail sender (exchange.live.mail) against a real SMTP server: aiosmtpd's
Controller, run in this process on 127.0.0.1, in plain, STARTTLS, client-certificate and
implicit TLS modes. The certificates come from a throwaway CA made here with `cryptography`."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import re
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.live.mail import Mail, MailConfig, Mailer, MailError
from tests.browser.hub import free_port

HOST = "127.0.0.1"
TEXT = "Une lame vous a été partagée par le Dr Lefèvre (CHU de Caen) : biopsie gastrique, œsophage."
LINK = "https://iain.example.fr/slides/42"


# --- A throwaway PKI ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate (PEM)
    server_cert: Path  # for 127.0.0.1 (IP SAN), with its key in server_key
    server_key: Path
    client_cert: Path  # the hub's, CN "iain-hub", with its key in client_key
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = path.with_suffix(".key")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key_path


def _issue(
    subject: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier,
    san: x509.GeneralName | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("IAIN test CA"))
        .issuer_name(_name("IAIN test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca = folder / "ca.pem"
    ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server = _issue(
        HOST,
        ca_cert,
        ca_key,
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.IPAddress(ipaddress.ip_address(HOST)),
    )
    client = _issue("iain-hub", ca_cert, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH)
    server_cert, client_cert = folder / "server.pem", folder / "client.pem"
    server_key = _write(server_cert, *server)
    client_key = _write(client_cert, *client)
    return Pki(ca, server_cert, server_key, client_cert, client_key)


def server_context(pki: Pki, *, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.load_verify_locations(cafile=pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


# --- The SMTP server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    peercert: dict[str, Any] | None  # the client certificate, when STARTTLS saw one


class Collector:
    """An aiosmtpd handler that keeps what it is given, refusing the recipients in `refuse`."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.refuse = refuse
        self.received: list[Received] = []

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        peercert = session.ssl.get("peercert") if session.ssl else None
        self.received.append(
            Received(str(envelope.mail_from), list(envelope.rcpt_tos), message, peercert)
        )
        return "250 OK"


@contextmanager
def smtp_server(handler: Collector, **kwargs: Any) -> Iterator[int]:
    """A running aiosmtpd server on 127.0.0.1 (SMTP keyword arguments in kwargs): its port."""
    port = free_port()
    controller = Controller(
        handler, hostname=HOST, port=port, server_hostname="localhost", ready_timeout=5, **kwargs
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def config(port: int, **kwargs: Any) -> MailConfig:
    kwargs.setdefault("starttls", False)
    kwargs.setdefault("timeout_s", 5.0)
    return MailConfig(host=HOST, port=port, sender="iain@hub.example.fr", **kwargs)


def notification(to: str = "dr.martin@chu-caen.fr") -> Mail:
    return Mail(to=to, subject="Lame partagée : biopsie gastrique", text=TEXT, link=LINK)


# --- Plain delivery --------------------------------------------------------------------------


def test_plain_delivery_carries_recipient_subject_utf8_body_and_link() -> None:
    handler = Collector()
    with smtp_server(handler) as port:
        Mailer(config(port)).send([notification()])

    [got] = handler.received
    assert got.mail_from == "iain@hub.example.fr"
    assert got.rcpt_tos == ["dr.martin@chu-caen.fr"]
    message = got.message
    assert message["To"] == "dr.martin@chu-caen.fr"
    assert message["From"] == "iain@hub.example.fr"
    assert message["Subject"] == "Lame partagée : biopsie gastrique"
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith(
        "@hub.example.fr>"
    )
    assert message["Date"].datetime.tzinfo is not None
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    body = message.get_content()
    assert TEXT in body
    assert LINK in body.splitlines()


def test_one_connection_sends_a_batch_and_a_refused_recipient_spares_the_others() -> None:
    handler = Collector(refuse=frozenset({"nobody@chu-caen.fr"}))
    mails = [notification("a@chu-caen.fr"), notification("nobody@chu-caen.fr")]
    mails.append(notification("b@chu-rouen.fr"))
    with (
        smtp_server(handler) as port,
        pytest.raises(MailError, match=re.escape("nobody@chu-caen.fr")),
    ):
        Mailer(config(port)).send(mails)
    assert [r.rcpt_tos for r in handler.received] == [["a@chu-caen.fr"], ["b@chu-rouen.fr"]]


def test_disabled_config_and_an_empty_batch() -> None:
    assert not MailConfig(host="").enabled
    assert MailConfig(host="smtp.example.fr").enabled
    Mailer(MailConfig(host="")).send([])  # nothing to send: no connection, no error
    with pytest.raises(MailError, match="disabled"):
        Mailer(MailConfig(host="")).send([notification()])


def test_the_password_stays_out_of_the_config_repr() -> None:
    assert "s3cret" not in repr(MailConfig(host="smtp.example.fr", password="s3cret"))


# --- TLS -------------------------------------------------------------------------------------


def test_starttls_verifies_the_server_with_the_ca_file(pki: Pki) -> None:
    handler = Collector()
    with smtp_server(handler, tls_context=server_context(pki), require_starttls=True) as port:
        Mailer(config(port, starttls=True, ca_file=str(pki.ca))).send([notification()])
    [got] = handler.received
    assert got.rcpt_tos == ["dr.martin@chu-caen.fr"]


def test_starttls_refuses_a_server_the_ca_does_not_vouch_for(pki: Pki) -> None:
    handler = Collector()
    with (
        smtp_server(handler, tls_context=server_context(pki), require_starttls=True) as port,
        pytest.raises(MailError, match="TLS"),
    ):
        Mailer(config(port, starttls=True)).send([notification()])  # system CAs only
    assert handler.received == []


def test_client_certificate_required_by_the_server(pki: Pki) -> None:
    handler = Collector()
    context = server_context(pki, require_client_cert=True)
    with smtp_server(handler, tls_context=context, require_starttls=True) as port:
        with pytest.raises(MailError):
            Mailer(config(port, starttls=True, ca_file=str(pki.ca))).send([notification()])
        assert handler.received == []

        with_cert = config(
            port,
            starttls=True,
            ca_file=str(pki.ca),
            client_cert=str(pki.client_cert),
            client_key=str(pki.client_key),
        )
        Mailer(with_cert).send([notification()])

    [got] = handler.received
    assert got.peercert is not None
    assert got.peercert["subject"] == ((("commonName", "iain-hub"),),)


def test_implicit_tls_with_a_client_certificate(pki: Pki) -> None:
    handler = Collector()
    with smtp_server(handler, ssl_context=server_context(pki)) as port:
        tls = config(
            port,
            tls=True,
            ca_file=str(pki.ca),
            client_cert=str(pki.client_cert),
            client_key=str(pki.client_key),
        )
        Mailer(tls).send([notification()])
    assert [r.rcpt_tos for r in handler.received] == [["dr.martin@chu-caen.fr"]]


def test_missing_tls_files_are_a_mail_error(tmp_path: Path) -> None:
    missing = config(1, starttls=True, ca_file=str(tmp_path / "no-such-ca.pem"))
    with pytest.raises(MailError, match="TLS files"):
        Mailer(missing).send([notification()])


# --- Never downgrade, never hang, never inject -----------------------------------------------


def test_starttls_asked_but_not_offered_sends_nothing() -> None:
    handler = Collector()
    with (
        smtp_server(handler) as port,  # no tls_context: no STARTTLS in its EHLO reply
        pytest.raises(MailError, match="does not offer STARTTLS"),
    ):
        Mailer(config(port, starttls=True)).send([notification()])
    assert handler.received == []


def test_nobody_listening_is_a_quick_mail_error() -> None:
    port = free_port()  # closed again: nothing listens there
    started = time.monotonic()
    with pytest.raises(MailError, match="cannot be reached"):
        Mailer(config(port, timeout_s=1)).send([notification()])
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "mail",
    [
        Mail(to="dr.martin@chu-caen.fr", subject="Lame\r\nBcc: victim@example.com", text="x"),
        Mail(to="dr.martin@chu-caen.fr", subject="Lame\nX-Evil: 1", text="x"),
        Mail(to="dr.martin@chu-caen.fr\r\nBcc: victim@example.com", subject="Lame", text="x"),
        Mail(to="dr.martin@chu-caen.fr\n", subject="Lame", text="x"),
    ],
)
def test_line_breaks_in_recipient_or_subject_are_refused(mail: Mail) -> None:
    handler = Collector()
    with smtp_server(handler) as port, pytest.raises(MailError, match="line break"):
        Mailer(config(port)).send([notification(), mail])
    assert handler.received == []  # checked before the first mail went out
