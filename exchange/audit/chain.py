"""The audit trail: append-only events, each chained to the previous one by its hash.

`record` adds an event inside the caller's transaction, so an action and its audit row are
committed together or not at all. The hash covers the event's seq and fields and the
previous event's hash: editing, deleting or reordering any row breaks the chain there, and
`verify` names the first broken seq.

Concurrency: appending first updates the one row of `audit_head`. On PostgreSQL that takes
its row lock until commit (READ COMMITTED then reads the latest committed head); on SQLite
the update takes the database's write lock (a SELECT would not: two transactions could read
the same last event). Either way concurrent transactions append one after the other, and
seq is given under that lock, so it has no gaps.

Retention: `prune` removes the events older than the retention (IAIN_AUDIT_RETENTION_DAYS)
and records in the head the seq and hash of the last removed one; `verify` starts there.

Shared slides: `SharedViews` records one `view_shared_slide` per user x slide x viewing
session (see `viewing_session`), checked in memory first so that tiles cost a dict lookup."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exchange.audit.actions import AuditAction
from exchange.core.db import Database
from exchange.core.models import AuditEvent, AuditHead, AuditView, as_utc
from exchange.core.principal import Principal

GENESIS = "0" * 64
HEAD_ID = 1
# French health-data rules keep access traces for years (hosting of health data, HDS;
# the CNIL's recommendations for medical records); ten years is the default, a setting.
DEFAULT_RETENTION_DAYS = 3650
# A bearer token has no login session: its views of one slide on one UTC day are one
# viewing session.
TOKEN_SESSION = "day"
# How many (user, slide, viewing session) keys a process remembers before asking the database.
VIEW_MEMORY = 100_000
EXPORT_COLUMNS = (
    "seq",
    "at",
    "actor_id",
    "actor_centre",
    "action",
    "target_type",
    "target_id",
    "detail",
    "prev_hash",
    "hash",
)

log = logging.getLogger(__name__)


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def hashed_fields(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": as_utc(event.at).isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor_centre": event.actor_centre,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "detail": event.detail,
    }


# --- Appending -------------------------------------------------------------------------------


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def _create_head(session: Session) -> None:
    """The head row, once per database; a database whose events predate it gets a head
    that continues them. Two first appenders at once: one insert is ignored."""
    first = session.scalars(select(AuditEvent).order_by(AuditEvent.seq).limit(1)).first()
    last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).first()
    values = {
        "id": HEAD_ID,
        "last_seq": last.seq if last else 0,
        "last_hash": last.hash if last else GENESIS,
        "floor_seq": first.seq - 1 if first else 0,
        "floor_hash": first.prev_hash if first else GENESIS,
    }
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(pg_insert(AuditHead).values(values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite_insert(AuditHead).values(values).on_conflict_do_nothing())
    else:
        session.execute(insert(AuditHead).values(values))


def _lock_head(session: Session) -> AuditHead:
    """The head, locked until the caller's transaction ends (see the module's docstring)."""
    touch = (
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(last_seq=AuditHead.last_seq)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(session.execute(touch)) == 0:
        _create_head(session)
        session.execute(touch)
    return session.scalars(
        select(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def record(
    session: Session,
    action: AuditAction,
    *,
    actor: Principal | None = None,
    target_type: str = "",
    target_id: str = "",
    detail: dict[str, Any] | None = None,
    actor_id: str | None = None,
    actor_centre: str | None = None,
) -> AuditEvent:
    """Appends an event in `session`'s transaction (committed with the action it records).

    `detail` must never hold a patient identifier: ids, purposes, counts only."""
    head = _lock_head(session)
    event = AuditEvent(
        seq=head.last_seq + 1,
        at=datetime.now(UTC),  # under the lock: seq order is time order
        actor_id=actor.user_id if actor else actor_id,
        actor_centre=actor.centre if actor else actor_centre,
        action=action,
        target_type=target_type,
        target_id=target_id,
        detail=detail or {},
        prev_hash=head.last_hash,
        hash="",
    )
    event.hash = event_hash(event.prev_hash, hashed_fields(event))
    session.add(event)
    head.last_seq, head.last_hash = event.seq, event.hash
    session.flush()
    return event


def record_now(db: Database, action: AuditAction, **fields: Any) -> AuditEvent:
    """`record` in a transaction of its own: for actions that write nothing else (a view,
    an export)."""
    with db.session() as session, session.begin():
        return record(session, action, **fields)


# --- Verifying -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    count: int
    broken_seq: int | None = None
    reason: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_seq is None


def verify(session: Session) -> Verification:
    """Walks the chain from its floor (the start, or the last prune) to the head."""
    head = session.get(AuditHead, HEAD_ID)
    expected_seq = head.floor_seq + 1 if head else 1
    expected_prev = head.floor_hash if head else GENESIS
    count = 0
    rows = session.scalars(
        select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000)
    )
    for event in rows:
        if event.seq < expected_seq:
            return Verification(count, event.seq, "an event older than the last prune is back")
        if event.seq > expected_seq:
            return Verification(count, expected_seq, "this event is missing (deleted)")
        if event.prev_hash != expected_prev:
            return Verification(
                count, event.seq, "it does not follow the previous event (edited or reordered)"
            )
        if event_hash(event.prev_hash, hashed_fields(event)) != event.hash:
            return Verification(count, event.seq, "its content was changed")
        expected_prev = event.hash
        expected_seq += 1
        count += 1
    if head is not None and (head.last_seq, head.last_hash) != (expected_seq - 1, expected_prev):
        return Verification(
            count, expected_seq, "the chain ends before its recorded head (events deleted)"
        )
    return Verification(count)


# --- Export and retention --------------------------------------------------------------------


def events_between(
    session: Session, since: datetime, until: datetime | None = None
) -> Iterator[dict[str, Any]]:
    query = select(AuditEvent).where(AuditEvent.at >= since).order_by(AuditEvent.seq)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    for event in session.scalars(query.execution_options(yield_per=1000)):
        row = {column: getattr(event, column) for column in EXPORT_COLUMNS}
        row["at"] = as_utc(event.at).isoformat(timespec="microseconds")
        yield row


def write_csv(rows: Iterator[dict[str, Any]], out: io.TextIOBase | Any) -> int:
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({**row, "detail": json.dumps(row["detail"], sort_keys=True)})
        count += 1
    return count


def write_json(rows: Iterator[dict[str, Any]], out: io.TextIOBase | Any) -> int:
    """A JSON array, one event per line (the file is streamed, never held whole)."""
    count = 0
    out.write("[")
    for row in rows:
        out.write(",\n" if count else "\n")
        out.write(json.dumps(row, sort_keys=True, ensure_ascii=False))
        count += 1
    out.write("\n]\n")
    return count


@dataclass(frozen=True)
class Pruned:
    events: int
    through_seq: int
    views: int


class ChainBroken(Exception):
    """The chain does not verify: pruning now could remove the evidence."""


def prune(session: Session, retention_days: int, now: datetime | None = None) -> Pruned:
    """Removes events older than the retention; the head keeps the last removed one's seq and
    hash, so the chain still verifies. Refuses a broken chain. Records its own event."""
    if retention_days < 1:
        raise ValueError("the retention is at least one day")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    head = _lock_head(session)
    check = verify(session)
    if not check.intact:
        raise ChainBroken(f"the audit chain is broken at seq {check.broken_seq}: {check.reason}")
    through = session.scalar(select(func.max(AuditEvent.seq)).where(AuditEvent.at < cutoff))
    events = views = 0
    if through is not None:
        last = session.get(AuditEvent, through)
        assert last is not None
        events = _rowcount(session.execute(delete(AuditEvent).where(AuditEvent.seq <= through)))
        head.floor_seq, head.floor_hash = through, last.hash
        head.pruned_at = datetime.now(UTC)
    views = _rowcount(session.execute(delete(AuditView).where(AuditView.at < cutoff)))
    record(
        session,
        AuditAction.AUDIT_PRUNE,
        target_type="audit",
        detail={"retention_days": retention_days, "events": events, "through_seq": through},
    )
    return Pruned(events, through or head.floor_seq, views)


# --- Views of shared slides --------------------------------------------------------------------


_day_cache: tuple[float, float, str] = (0.0, 0.0, "")


def _utc_day(now: datetime | None) -> str:
    """Today's UTC date as text; recomputed once a day, not on every tile."""
    global _day_cache
    if now is not None:
        return as_utc(now).date().isoformat()
    start, end, day = _day_cache
    clock = time.time()
    if not start <= clock < end:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = today.timestamp()
        _day_cache = (start, start + 86400, today.date().isoformat())
        day = _day_cache[2]
    return day


def viewing_session(principal: Principal, now: datetime | None = None) -> str:
    """What one 'viewing session' is: a browser login session; for an API token (scripts,
    GPU workers: no session), its use on one UTC day."""
    if principal.session_id is not None:
        return f"session:{principal.session_id}"
    day = _utc_day(now)
    if principal.token_id is not None:
        return f"token:{principal.token_id}:{day}"
    return f"user:{day}"


class SharedViews:
    """Records `view_shared_slide` once per (user, slide, viewing session). A key seen by this
    process costs a dict lookup; a new one writes its key and event in one transaction (a key
    another process wrote first makes that transaction fail on the unique key: no event)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, principal: Principal, slide_id: str) -> bool:
        """True when this view was already recorded by this process (the cheap check)."""
        key = (principal.user_id, slide_id, viewing_session(principal))
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return True
        return False

    def remember(self, principal: Principal, slide_id: str) -> None:
        """Nothing to record for this view in this viewing session (not a shared slide)."""
        key = (principal.user_id, slide_id, viewing_session(principal))
        with self._lock:
            self._seen[key] = None
            while len(self._seen) > VIEW_MEMORY:
                self._seen.popitem(last=False)

    def record(
        self, principal: Principal, slide_id: str, detail: dict[str, Any] | None = None
    ) -> bool:
        """Records the view unless it was already; True when this call wrote the event."""
        if self.seen(principal, slide_id):
            return False
        session_key = viewing_session(principal)
        wrote = False
        try:
            with self._db.session() as session, session.begin():
                session.add(
                    AuditView(
                        user_id=principal.user_id,
                        slide_id=slide_id,
                        viewing_session=session_key,
                        at=datetime.now(UTC),
                    )
                )
                session.flush()  # the unique key first: a duplicate writes no event
                record(
                    session,
                    AuditAction.VIEW_SHARED_SLIDE,
                    actor=principal,
                    target_type="slide",
                    target_id=slide_id,
                    detail={"view": "deidentified", **(detail or {})},
                )
            wrote = True
        except IntegrityError:
            pass  # another process recorded this viewing session first
        self.remember(principal, slide_id)
        return wrote
