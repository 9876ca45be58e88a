"""Who is calling: the authenticated user as every route and the policy see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    PATHOLOGIST = "pathologist"
    RESIDENT = "resident"
    TECHNICIAN = "technician"
    TEACHER = "teacher"
    AI_ENGINEER = "ai_engineer"
    CENTRE_ADMIN = "centre_admin"
    HUB_ADMIN = "hub_admin"
    # A machine account (an inference worker's): it sees no slide itself; its token's
    # scope opens the worker protocol, and each job's capability that job's slide.
    SERVICE = "service"


class Scope(StrEnum):
    """What an API token is narrowed to; a token without scopes acts as its user."""

    WORKER = "worker"  # an inference worker: only the worker protocol (exchange.web.jobs)
    # With WORKER: the jobs of every centre (the hub's own pool, the embedded worker);
    # without it a worker runs its own centre's jobs only.
    ALL_CENTRES = "all_centres"


class Purpose(StrEnum):
    SECOND_OPINION = "second_opinion"
    TEACHING = "teaching"
    TUMOUR_BOARD = "tumour_board"


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    centre: str
    roles: frozenset[Role]
    # How the call was authenticated: an API token (its id and scopes) or a browser
    # session (its id); session calls that change state must carry the CSRF token.
    token_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    session_id: str | None = None
    # A job's read capability (exchange.jobs.capability): the caller is the job's requester,
    # seeing this one slide address only, through the tile routes only.
    only_slide: str | None = None

    def has(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)
