"""The hub's e-mail sender: plain-text notifications over SMTP, standard library only.

One SMTP connection per batch. Transport security never downgrades: STARTTLS when asked
(port 587) fails the send if the server does not offer it; implicit TLS (SMTPS, port 465)
when `tls` is set. The same TLS context serves both: the server is verified against the
system CAs or `ca_file`, and the hub presents `client_cert` when set (MSSanté's secure mail
is SMTP with client certificates). Errors come out as MailError, whose message names the
server and what failed, never the password."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

# Characters that would end a header line (or a protocol line) early: header injection.
_LINE_BREAKS = ("\r", "\n", "\0")


@dataclass(frozen=True)
class MailConfig:
    host: str  # "" = e-mail disabled
    port: int = 587
    sender: str = "iain@localhost"
    # STARTTLS after EHLO (port 587); False with tls=False = plain (tests, a local relay).
    starttls: bool = True
    tls: bool = False  # implicit TLS (SMTPS, port 465); takes precedence over starttls
    username: str = ""
    password: str = field(default="", repr=False)  # kept out of logs and tracebacks
    ca_file: str = ""  # a CA bundle to verify the server with ("" = system CAs)
    # PEM certificate+chain of the hub: MSSanté's secure mail is SMTP with client certificates.
    client_cert: str = ""
    client_key: str = ""  # "" = the key is in client_cert's file
    timeout_s: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str  # plain text only
    link: str = ""  # appended as its own line


class MailError(Exception):
    """The server refused or could not be reached (or a mail was malformed): the message
    says what, without secrets."""


class Mailer:
    def __init__(self, config: MailConfig) -> None:
        self.config = config

    def send(self, mails: Sequence[Mail]) -> None:
        """Send the batch over one SMTP connection. Every mail is checked before connecting
        (a line break in a recipient or subject sends nothing). A recipient the server
        refuses does not stop the others; the refusals are raised together at the end."""
        if not mails:
            return
        config = self.config
        if not config.enabled:
            raise MailError("e-mail is disabled: no SMTP host configured")
        messages = [(mail.to, self._message(mail)) for mail in mails]
        context = self._tls_context() if config.tls or config.starttls else None
        where = f"SMTP server {config.host}:{config.port}"
        refused: list[str] = []
        try:
            smtp = self._connect(context)
            with smtp:
                for to, message in messages:
                    try:
                        smtp.send_message(message, from_addr=config.sender, to_addrs=[to])
                    except smtplib.SMTPRecipientsRefused as exc:
                        for address, (code, reply) in exc.recipients.items():
                            refused.append(f"{address} ({code} {_text(reply)})")
                    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                        refused.append(f"{to} ({exc.smtp_code} {_text(exc.smtp_error)})")
        except MailError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise MailError(
                f"{where} refused the login of {config.username!r}: "
                f"{exc.smtp_code} {_text(exc.smtp_error)}"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise MailError(f"{where} refused: {exc.smtp_code} {_text(exc.smtp_error)}") from exc
        except smtplib.SMTPException as exc:  # disconnected, no AUTH, ...
            raise MailError(f"{where}: {type(exc).__name__}: {exc}") from exc
        except ssl.SSLError as exc:  # before OSError: it is one
            raise MailError(f"{where}: TLS failed: {exc.reason or exc}") from exc
        except TimeoutError as exc:
            raise MailError(f"{where}: no answer within {config.timeout_s:g} s") from exc
        except OSError as exc:
            raise MailError(f"{where} cannot be reached: {exc.strerror or exc}") from exc
        if refused:
            raise MailError(
                f"{where} refused {len(refused)} of {len(messages)} mails: " + ", ".join(refused)
            )

    def _connect(self, context: ssl.SSLContext | None) -> smtplib.SMTP:
        """A connection past EHLO, encrypted as configured, logged in if configured."""
        config = self.config
        smtp: smtplib.SMTP
        if config.tls:
            smtp = smtplib.SMTP_SSL(
                config.host, config.port, timeout=config.timeout_s, context=context
            )
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
        try:
            smtp.ehlo()
            if config.starttls and not config.tls:
                if not smtp.has_extn("starttls"):
                    raise MailError(
                        f"SMTP server {config.host}:{config.port} does not offer STARTTLS: "
                        "nothing sent in clear"
                    )
                smtp.starttls(context=context)
                smtp.ehlo()
            if config.username:
                smtp.login(config.username, config.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _tls_context(self) -> ssl.SSLContext:
        config = self.config
        try:
            context = ssl.create_default_context(cafile=config.ca_file or None)
            if config.client_cert:
                context.load_cert_chain(config.client_cert, config.client_key or None)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise MailError(f"cannot load the e-mail TLS files: {exc}") from exc
        return context

    def _message(self, mail: Mail) -> EmailMessage:
        sender = self.config.sender
        for name, value in (("recipient", mail.to), ("subject", mail.subject), ("sender", sender)):
            if any(c in value for c in _LINE_BREAKS):
                raise MailError(f"the {name} of a mail contains a line break: refused")
        if not mail.to.strip():
            raise MailError("a mail has no recipient")
        message = EmailMessage()
        message["From"] = sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        message["Message-ID"] = make_msgid(domain=domain)
        body = mail.text.rstrip("\n")
        if mail.link:
            body += "\n\n" + mail.link
        message.set_content(body + "\n", charset="utf-8")
        return message


def _text(reply: bytes | str) -> str:
    """A server's reply as text, kept short."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:200]
