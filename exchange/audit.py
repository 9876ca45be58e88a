"""The audit trail: append-only events, each chained to the previous one by its hash.

`record` adds an event inside the caller's transaction, so an action and its audit row are
committed together or not at all. The hash covers the event's fields and the previous
event's hash: editing or deleting any row breaks the chain from there on."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.models import AuditEvent
from exchange.principal import Principal

GENESIS = "0" * 64


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def hashed_fields(event: AuditEvent) -> dict[str, Any]:
    at = event.at if event.at.tzinfo is not None else event.at.replace(tzinfo=UTC)
    return {
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor_centre": event.actor_centre,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "detail": event.detail,
    }


def record(
    session: Session,
    action: str,
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
    last = session.scalars(
        select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1).with_for_update()
    ).first()
    event = AuditEvent(
        at=datetime.now(UTC),
        actor_id=actor.user_id if actor else actor_id,
        actor_centre=actor.centre if actor else actor_centre,
        action=action,
        target_type=target_type,
        target_id=target_id,
        detail=detail or {},
        prev_hash=last.hash if last is not None else GENESIS,
        hash="",
    )
    event.hash = event_hash(event.prev_hash, hashed_fields(event))
    session.add(event)
    session.flush()
    return event
