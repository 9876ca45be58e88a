"""FastAPI dependencies of the hub's routes: its services, the slide of the path as the
caller may see it (exchange.access.policy decides), the tile routes' per-caller locator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from exchange.access.policy import (
    ANNOTATE_ROLES,
    MAX_ID,
    OVERLAY_WRITE_ROLES,
    UPLOAD_ROLES,
    Forbidden,
    Policy,
    SlideAccess,
)
from exchange.core.models import Upload
from exchange.core.principal import Role
from exchange.slides.catalogue import Catalogue
from exchange.slides.uploads import UploadNotFound
from exchange.web.auth import CurrentUser, NotAuthenticated, authenticate
from exchange.web.hub import hub_of
from storage import ObjectStore
from tiles.errors import SlideNotFound
from tiles.location import SlideLocator


def get_catalogue(request: Request) -> Catalogue:
    return hub_of(request).catalogue


def get_store(request: Request) -> ObjectStore:
    return hub_of(request).store


CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]


def get_policy(request: Request) -> Policy:
    return hub_of(request).policy


PolicyDep = Annotated[Policy, Depends(get_policy)]


def slide_access(
    request: Request, slide_id: str, principal: CurrentUser, policy: PolicyDep
) -> SlideAccess:
    """The slide of the path, as the caller may see it; 404 if they may not."""
    access = policy.access(principal, slide_id)
    if access is None:
        raise SlideNotFound(f"no slide {slide_id!r}")
    # The error handler reads it: errors on a de-identified view get generic messages.
    request.state.slide_view = access.view
    return access


def home_slide(access: Annotated[SlideAccess, Depends(slide_access)]) -> SlideAccess:
    """The slide on its full view (annotations, overlays): other views answer 404."""
    if not access.full:
        raise SlideNotFound(f"no slide {access.address!r}")
    return access


def _role_check(roles: frozenset[Role], what: str) -> Callable[..., SlideAccess]:
    def check(
        principal: CurrentUser, access: Annotated[SlideAccess, Depends(home_slide)]
    ) -> SlideAccess:
        if not principal.has(*roles):
            raise Forbidden(f"your role may not {what}")
        return access

    return check


annotatable_slide = _role_check(ANNOTATE_ROLES, "change annotations")
overlay_writable_slide = _role_check(OVERLAY_WRITE_ROLES, "change overlays")

VisibleSlide = Annotated[SlideAccess, Depends(slide_access)]
HomeSlide = Annotated[SlideAccess, Depends(home_slide)]


def own_upload(upload_id: str, principal: CurrentUser, policy: PolicyDep) -> str:
    """An upload of the caller's centre, by a role that uploads; else the unknown-id 404."""
    with policy.catalogue.session() as session:
        upload = session.get(Upload, upload_id) if len(upload_id) <= MAX_ID else None
    if upload is None or upload.centre != principal.centre or not principal.has(*UPLOAD_ROLES):
        raise UploadNotFound(f"no upload {upload_id!r}")
    return upload_id


def request_locator(request: Request) -> SlideLocator:
    """The tile routes' locator for this request (401 without a caller)."""
    principal = authenticate(request)
    if principal is None:
        raise NotAuthenticated("log in, or send an API token as 'Authorization: Bearer …'")
    return get_policy(request).locator_for(principal)
