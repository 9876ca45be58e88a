"""What the tile routes report to the audit trail (they cannot import the hub: the
composition root, iain.app, injects these as `app.state.on_slide_view` and
`app.state.on_associated_view`).

- A de-identified view of another centre's slide (through a grant) is a view of a shared
  slide: one `view_shared_slide` event per user x slide x viewing session
  (exchange.audit.chain.SharedViews); every later tile of that session costs a dict lookup.
  The tile fast path (tiles.fastpath: cache hits, stored tiles) records nothing: its
  locator (exchange.access.callers, given `shared_views.seen`) leaves a de-identified view not yet
  recorded in this viewing session to the route, which records it (in a thread, not in
  the event loop the fast path runs in) and answers it.
- A label or macro image (they may show the patient's name) is audited on every view."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from exchange.audit import chain as audit
from exchange.audit.actions import AuditAction
from exchange.core.models import Grant, Slide
from exchange.core.principal import Principal
from exchange.slides.catalogue import Catalogue
from exchange.web.auth import authenticate
from tiles.location import SlideLocation


class AuditHooks:
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.shared_views = audit.SharedViews(catalogue.db)

    async def on_slide_view(self, request: Request, loc: SlideLocation) -> None:
        principal = authenticate(request)
        if principal is None or self.shared_views.seen(principal, loc.slide_id):
            return
        await run_in_threadpool(self.shared_view, principal, loc.slide_id)

    def shared_view(self, principal: Principal, slide_id: str) -> None:
        """Records the view if the slide is another centre's (the grant that allowed it in
        the event); a de-identified view of one's own centre's slide is not a shared one."""
        with self.catalogue.session() as session:
            slide = session.get(Slide, slide_id)
            if slide is None or slide.centre == principal.centre:
                self.shared_views.remember(principal, slide_id)
                return
            grant = self._grant(session, principal, slide)
        detail: dict[str, Any] = {"slide_centre": slide.centre}
        if grant is not None:
            detail.update(grant_id=grant.id, purpose=grant.purpose)
        self.shared_views.record(principal, slide_id, detail)

    @staticmethod
    def _grant(session: Session, principal: Principal, slide: Slide) -> Grant | None:
        on_slide = Grant.slide_id == slide.id
        on_what = (
            on_slide if slide.case_id is None else or_(on_slide, Grant.case_id == slide.case_id)
        )
        now = datetime.now(UTC)
        for grant in session.scalars(
            select(Grant)
            .where(
                on_what,
                or_(
                    Grant.grantee_centre == principal.centre,
                    Grant.grantee_user_id == principal.user_id,
                ),
                Grant.revoked_at.is_(None),
            )
            .order_by(Grant.created_at.desc())
        ):
            if grant.expires_at is None or grant.expires_at > now:
                return grant
        return None

    async def on_associated_view(self, request: Request, loc: SlideLocation, name: str) -> None:
        principal = authenticate(request)
        action = {"label": AuditAction.VIEW_LABEL, "macro": AuditAction.VIEW_MACRO}.get(
            name, AuditAction.VIEW_ASSOCIATED
        )
        await run_in_threadpool(
            audit.record_now,
            self.catalogue.db,
            action,
            actor=principal,
            target_type="slide",
            target_id=loc.slide_id,
            detail={"image": name, "view": loc.view.value},
        )
