"""Notifications: something awaits a user. Written in the transaction of what caused it;
shown in the app (a bell with the unread count, pushed live by `Feed`), and mailed when the
user chose e-mail for that event and has an address (`Outbox`, after the commit).

A notification's text and link name no patient and no slide: only what happened, from
which centre, and where to look. E-mails carry the same and nothing more.

Across hub processes: the database is the channel. Every process's `Feed` reads the
notifications written since its last look (one indexed query per process per
`poll_s`, whatever the number of open pages), so a user on another process hears of a
notification within `poll_s`; the mail outbox claims each e-mail with a conditional update,
so two processes never send one twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from exchange.core.db import Database
from exchange.core.ids import new_id
from exchange.core.models import Notification, NotificationSettings, User
from exchange.live.mail import Mail, Mailer, MailError

log = logging.getLogger("iain.notifications")


class Event(StrEnum):
    SUBMITTED = "submitted"  # a request awaits you (or your pool)
    ASSIGNED = "assigned"
    RETURNED = "returned"  # an assigned consultant handed it back to the pool
    ACCEPTED = "accepted"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"
    INFO_REQUESTED = "info_requested"
    INFO_PROVIDED = "info_provided"
    ANSWERED = "answered"
    ADDENDUM = "addendum"
    CLOSED = "closed"
    MESSAGE = "message"
    MENTION = "mention"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"


# By default every event shows in the app, and what asks something of the user is mailed.
MAILED_BY_DEFAULT = frozenset(
    {
        Event.SUBMITTED,
        Event.ASSIGNED,
        Event.RETURNED,
        Event.INFO_REQUESTED,
        Event.INFO_PROVIDED,
        Event.ANSWERED,
        Event.MENTION,
        Event.DUE_SOON,
        Event.OVERDUE,
    }
)
MAIL_ATTEMPTS = 5
# A claim older than this ("sending" by a process that died) is tried again.
SENDING_STALE_S = 300.0


@dataclass(frozen=True)
class Choice:
    app: bool
    email: bool


def default_choice(event: Event) -> Choice:
    return Choice(app=True, email=event in MAILED_BY_DEFAULT)


def choices_of(session: Session, user_id: str) -> dict[Event, Choice]:
    row = session.get(NotificationSettings, user_id)
    stored = row.choices if row is not None else {}
    out = {}
    for event in Event:
        given = stored.get(event.value) or {}
        base = default_choice(event)
        out[event] = Choice(
            app=bool(given.get("app", base.app)), email=bool(given.get("email", base.email))
        )
    return out


def set_choices(session: Session, user_id: str, choices: dict[Event, Choice]) -> None:
    row = session.get(NotificationSettings, user_id)
    data = {e.value: {"app": c.app, "email": c.email} for e, c in choices.items()}
    if row is None:
        session.add(NotificationSettings(user_id=user_id, choices=data))
    else:
        row.choices = {**row.choices, **data}


def notify(
    session: Session,
    user_ids: Iterable[str],
    event: Event,
    subject_type: str,
    subject_id: str,
    text: str,
    link: str,
) -> list[Notification]:
    """Adds one notification per user (in the caller's transaction), as each user chose."""
    made = []
    now = datetime.now(UTC)
    for user_id in dict.fromkeys(user_ids):
        user = session.get(User, user_id)
        if user is None or not user.active:
            continue
        choice = choices_of(session, user_id)[event]
        mailed = choice.email and bool(user.email)
        if not choice.app and not mailed:
            continue
        row = Notification(
            id=new_id(),
            user_id=user_id,
            event=event.value,
            subject_type=subject_type,
            subject_id=subject_id,
            text=text[:500],
            link=link[:500],
            created_at=now,
            # Chosen for e-mail only: nothing shows in the app, so it counts as read.
            read_at=None if choice.app else now,
            mail_state="pending" if mailed else "",
        )
        session.add(row)
        made.append(row)
    return made


def unread_count(session: Session, user_id: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        )
        or 0
    )


def recent(session: Session, user_id: str, limit: int = 50) -> Sequence[Notification]:
    return session.scalars(
        select(Notification)
        .where(Notification.user_id == user_id)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(limit)
    ).all()


def mark_read(session: Session, user_id: str, ids: Sequence[str] | None) -> int:
    """Marks the user's notifications read (all of them when `ids` is None)."""
    query = update(Notification).where(
        Notification.user_id == user_id, Notification.read_at.is_(None)
    )
    if ids is not None:
        query = query.where(Notification.id.in_(list(ids)))
    result = session.execute(query.values(read_at=datetime.now(UTC)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# -- live: the feed of one hub process --------------------------------------------------------


class Feed:
    """Pushes each new notification to the open pages of its user on this process.

    One thread per process polls the table for rows newer than its last look (with an
    overlap, since a transaction that began earlier may commit later), and hands each new
    row to the user's subscribers' asyncio queues."""

    OVERLAP_S = 5.0

    def __init__(self, db: Database, poll_s: float = 0.25) -> None:
        self.db = db
        self.poll_s = poll_s
        self._subscribers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]]]
        self._subscribers = defaultdict(set)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[str, float] = {}

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="iain-feed", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    @contextlib.contextmanager
    def subscribe(self, user_id: str) -> Any:
        """An asyncio queue receiving the user's new notifications (dicts) while open."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=100)
        entry = (loop, queue)
        with self._lock:
            self._subscribers[user_id].add(entry)
        self.start()
        try:
            yield queue
        finally:
            with self._lock:
                self._subscribers[user_id].discard(entry)
                if not self._subscribers[user_id]:
                    del self._subscribers[user_id]

    def _run(self) -> None:
        since = datetime.now(UTC) - timedelta(seconds=self.OVERLAP_S)
        while not self._stop.wait(self.poll_s):
            with self._lock:
                watched = list(self._subscribers)
            if not watched:
                since = datetime.now(UTC) - timedelta(seconds=self.OVERLAP_S)
                continue
            try:
                started = datetime.now(UTC)
                with self.db.session() as session:
                    rows = session.scalars(
                        select(Notification)
                        .where(Notification.created_at >= since, Notification.read_at.is_(None))
                        .order_by(Notification.created_at)
                    ).all()
                    counts = {
                        user: unread_count(session, user)
                        for user in {r.user_id for r in rows if r.id not in self._seen}
                    }
                since = started - timedelta(seconds=self.OVERLAP_S)
            except Exception:  # the database is busy or gone: try again next time
                log.warning("the notification feed could not read the database", exc_info=True)
                continue
            now = time.monotonic()
            for row in rows:
                if row.id in self._seen:
                    continue
                self._seen[row.id] = now
                self._push(
                    row.user_id, {"notification": as_dict(row), "unread": counts[row.user_id]}
                )
            # Forget what is older than the overlap: it cannot come back.
            self._seen = {k: v for k, v in self._seen.items() if now - v < 4 * self.OVERLAP_S}

    def _push(self, user_id: str, message: dict[str, Any]) -> None:
        with self._lock:
            targets = list(self._subscribers.get(user_id, ()))
        for loop, queue in targets:
            with contextlib.suppress(RuntimeError):  # the page's loop is closing
                loop.call_soon_threadsafe(_offer, queue, message)


def _offer(queue: asyncio.Queue[Any], message: dict[str, Any]) -> None:
    with contextlib.suppress(asyncio.QueueFull):  # a page that does not read loses pushes
        queue.put_nowait(message)


def as_dict(row: Notification) -> dict[str, Any]:
    return {
        "id": row.id,
        "event": row.event,
        "subject_type": row.subject_type,
        "subject_id": row.subject_id,
        "text": row.text,
        "link": row.link,
        "created_at": row.created_at.isoformat(),
        "read": row.read_at is not None,
    }


# -- e-mail -----------------------------------------------------------------------------------


class Outbox:
    """Sends the pending e-mails; safe with several hub processes (each row is claimed by
    one conditional update)."""

    def __init__(self, db: Database, mailer: Mailer, public_url: str = "") -> None:
        self.db = db
        self.mailer = mailer
        self.public_url = public_url.rstrip("/")

    def send_pending(self, limit: int = 100) -> int:
        """Claims and sends up to `limit` e-mails; returns how many were sent."""
        stale = datetime.now(UTC) - timedelta(seconds=SENDING_STALE_S)
        with self.db.session() as session, session.begin():
            # A claim by a process that died mid-send is retried.
            session.execute(
                update(Notification)
                .where(Notification.mail_state == "sending", Notification.created_at < stale)
                .values(mail_state="pending")
            )
        with self.db.session() as session:
            candidates = (
                session.execute(
                    select(Notification.id)
                    .where(Notification.mail_state == "pending")
                    .order_by(Notification.created_at)
                    .limit(limit)
                )
                .scalars()
                .all()
            )
        claimed: list[tuple[str, Mail]] = []
        for notification_id in candidates:
            with self.db.session() as session, session.begin():
                won = session.execute(
                    update(Notification)
                    .where(Notification.id == notification_id, Notification.mail_state == "pending")
                    .values(mail_state="sending", mail_attempts=Notification.mail_attempts + 1)
                ).rowcount  # type: ignore[attr-defined]
                if not won:
                    continue
                row = session.get(Notification, notification_id)
                user = session.get(User, row.user_id) if row else None
                if row is None or user is None or not user.email:
                    if row is not None:
                        row.mail_state = "failed"
                    continue
                claimed.append((row.id, self._mail(user.email, row)))
        # One mail at a time: a refused recipient or a bad address never makes the others
        # of a batch be sent again, nor fail with it.
        sent = 0
        for notification_id, mail in claimed:
            try:
                self.mailer.send([mail])
                outcome = "sent"
                sent += 1
            except MailError as exc:
                log.warning("an e-mail was not sent (%s): it will be retried", exc)
                outcome = "retry"
            with self.db.session() as session, session.begin():
                row = session.get(Notification, notification_id)
                if row is None:
                    continue
                if outcome == "sent":
                    row.mail_state = "sent"
                else:
                    row.mail_state = "failed" if row.mail_attempts >= MAIL_ATTEMPTS else "pending"
        return sent

    def _mail(self, to: str, row: Notification) -> Mail:
        link = row.link if row.link.startswith("http") else f"{self.public_url}{row.link}"
        return Mail(
            to=to,
            subject=f"IAIN: {row.text.split(' — ')[0]}",
            text=(f"{row.text}.\n\nOpen IAIN to see it (this message holds no patient data)."),
            link=link,
        )


class Scheduler:
    """The hub's periodic work: the mail outbox and the due-date reminders (each reminder
    is claimed by a conditional update, so several hub processes send it once)."""

    def __init__(
        self, tasks: Sequence[tuple[float, Callable[[], object]]], name: str = "iain-scheduler"
    ) -> None:
        self.tasks = tasks
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        last = [0.0] * len(self.tasks)
        while not self._stop.wait(0.2):
            now = time.monotonic()
            for i, (every_s, task) in enumerate(self.tasks):
                if now - last[i] < every_s:
                    continue
                last[i] = now
                try:
                    task()
                except Exception:  # a busy database, an unreachable mail server: next time
                    log.warning(
                        "scheduled task %s failed", getattr(task, "__name__", task), exc_info=True
                    )
