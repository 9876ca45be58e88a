"""Notifications over HTTP: the bell, its live feed, and each user's choices.

GET  /api/notifications                 the latest, with the unread count
POST /api/notifications/read            {"ids": [...]} or {} for all: marks them read
GET  /api/notifications/stream          Server-Sent Events: each new notification, live,
                                        whatever hub process wrote it (exchange.live)
GET  /api/notifications/settings        e-mail address and per-event channels
PUT  /api/notifications/settings
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from exchange.core.models import User
from exchange.live import notifications
from exchange.live.notifications import Choice, Event
from exchange.web.auth import CurrentUser
from exchange.web.hub import HubDep

router = APIRouter(prefix="/api/notifications", tags=["notifications"])
KEEPALIVE_S = 15.0


class ReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=500)


class ChoiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app: bool = True
    email: bool = False


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # An address, or "" for in-app only.
    email: (
        Annotated[str, Field(max_length=254, pattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None
    ) = None
    choices: dict[Event, ChoiceIn] = Field(default_factory=dict)


@router.get("")
def latest(hub: HubDep, principal: CurrentUser, limit: int = 50) -> dict[str, Any]:
    with hub.db.session() as session:
        rows = notifications.recent(session, principal.user_id, min(max(limit, 1), 200))
        return {
            "unread": notifications.unread_count(session, principal.user_id),
            "items": [notifications.as_dict(r) for r in rows],
        }


@router.post("/read")
def mark_read(body: ReadIn, hub: HubDep, principal: CurrentUser) -> dict[str, int]:
    with hub.db.session() as session, session.begin():
        changed = notifications.mark_read(session, principal.user_id, body.ids)
        return {"marked": changed, "unread": notifications.unread_count(session, principal.user_id)}


@router.get("/settings")
def get_settings(hub: HubDep, principal: CurrentUser) -> dict[str, Any]:
    with hub.db.session() as session:
        user = session.get(User, principal.user_id)
        choices = notifications.choices_of(session, principal.user_id)
        return {
            "email": user.email if user else "",
            "choices": {e.value: {"app": c.app, "email": c.email} for e, c in choices.items()},
        }


@router.put("/settings")
def put_settings(body: SettingsIn, hub: HubDep, principal: CurrentUser) -> dict[str, Any]:
    with hub.db.session() as session, session.begin():
        user = session.scalar(select(User).where(User.id == principal.user_id))
        if user is not None and body.email is not None:
            user.email = body.email
        notifications.set_choices(
            session,
            principal.user_id,
            {event: Choice(app=c.app, email=c.email) for event, c in body.choices.items()},
        )
    return get_settings(hub, principal)


@router.get("/stream")
async def stream(request: Request, hub: HubDep, principal: CurrentUser) -> StreamingResponse:
    feed = hub.feed

    async def events() -> AsyncIterator[str]:
        with feed.subscribe(principal.user_id) as queue:
            unread = await run_in_threadpool(_unread, hub, principal.user_id)
            yield f"event: hello\ndata: {json.dumps({'unread': unread})}\n\n"
            while not await request.is_disconnected():
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: notification\ndata: {json.dumps(message)}\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _unread(hub: Any, user_id: str) -> int:
    with hub.db.session() as session:
        return notifications.unread_count(session, user_id)
