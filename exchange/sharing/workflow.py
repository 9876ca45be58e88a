"""The second-opinion workflow, written once: states, who acts, what each may do.

    draft -> submitted -> (pool: assigned by a pool manager) -> accepted | declined | reassigned
          -> information requested <-> provided -> answered -> addendum* -> closed
    withdrawn by the requester only before acceptance.

Who acts is relative to the consultation (`Actor`): its requester; its consultant (the named
addressee, or the pool member it was assigned to or who took it); the managers and members
of the pool it was sent to. Everyone else does not see it (404). `decide` is the one
function the service asks; `matrix()` spells out every (addressing, state, actor, action)
for the documentation and the tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from exchange.core.errors import ExchangeError


class State(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    ASSIGNED = "assigned"  # a pool manager chose a consultant; not yet accepted
    ACCEPTED = "accepted"
    INFO_REQUESTED = "info_requested"
    ANSWERED = "answered"
    CLOSED = "closed"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"


ENDED = frozenset({State.CLOSED, State.DECLINED, State.WITHDRAWN})
# Waiting on someone: what the due date and the reminders are about.
OPEN = frozenset({State.SUBMITTED, State.ASSIGNED, State.ACCEPTED, State.INFO_REQUESTED})


class Addressing(StrEnum):
    USER = "user"  # a named pathologist
    POOL = "pool"  # a centre's specialty pool


class Actor(StrEnum):
    REQUESTER = "requester"
    CONSULTANT = "consultant"
    POOL_MANAGER = "pool_manager"
    POOL_MEMBER = "pool_member"


class Action(StrEnum):
    EDIT = "edit"
    SUBMIT = "submit"
    WITHDRAW = "withdraw"
    ASSIGN = "assign"
    ACCEPT = "accept"
    DECLINE = "decline"
    REQUEST_INFO = "request_info"
    PROVIDE_INFO = "provide_info"
    ANSWER = "answer"
    ADDENDUM = "addendum"
    CLOSE = "close"
    COMMENT = "comment"  # a message in the consultation's threads
    TRACK_MATERIAL = "track_material"  # blocks and glass: sent, received, returned


@dataclass(frozen=True)
class Rule:
    action: Action
    states: frozenset[State]
    actors: frozenset[Actor]
    to: State | None  # None: the state does not change
    addressing: frozenset[Addressing] = frozenset(Addressing)


def _rule(
    action: Action,
    states: Iterable[State],
    actors: Iterable[Actor],
    to: State | None = None,
    addressing: Iterable[Addressing] = tuple(Addressing),
) -> Rule:
    return Rule(action, frozenset(states), frozenset(actors), to, frozenset(addressing))


S, A = State, Actor
USER, POOL = (Addressing.USER,), (Addressing.POOL,)
DISCUSSING = (S.SUBMITTED, S.ASSIGNED, S.ACCEPTED, S.INFO_REQUESTED, S.ANSWERED)
# The first rule that matches decides (see `decide`): order matters where two could.
RULES: tuple[Rule, ...] = (
    _rule(Action.EDIT, [S.DRAFT], [A.REQUESTER]),
    _rule(Action.SUBMIT, [S.DRAFT], [A.REQUESTER], S.SUBMITTED),
    _rule(Action.WITHDRAW, [S.DRAFT, S.SUBMITTED, S.ASSIGNED], [A.REQUESTER], S.WITHDRAWN),
    _rule(Action.ASSIGN, [S.SUBMITTED, S.ASSIGNED], [A.POOL_MANAGER], S.ASSIGNED, POOL),
    _rule(Action.ACCEPT, [S.SUBMITTED], [A.CONSULTANT], S.ACCEPTED, USER),
    # A pool's member takes an unassigned request; the assigned consultant accepts theirs.
    _rule(Action.ACCEPT, [S.SUBMITTED], [A.POOL_MEMBER, A.POOL_MANAGER], S.ACCEPTED, POOL),
    _rule(Action.ACCEPT, [S.ASSIGNED], [A.CONSULTANT], S.ACCEPTED, POOL),
    _rule(Action.DECLINE, [S.SUBMITTED], [A.CONSULTANT], S.DECLINED, USER),
    # The pool declines through its manager; an assigned consultant hands it back to the pool.
    _rule(Action.DECLINE, [S.SUBMITTED, S.ASSIGNED], [A.POOL_MANAGER], S.DECLINED, POOL),
    _rule(Action.DECLINE, [S.ASSIGNED], [A.CONSULTANT], S.SUBMITTED, POOL),
    _rule(Action.REQUEST_INFO, [S.ACCEPTED], [A.CONSULTANT], S.INFO_REQUESTED),
    _rule(Action.PROVIDE_INFO, [S.INFO_REQUESTED], [A.REQUESTER], S.ACCEPTED),
    _rule(Action.ANSWER, [S.ACCEPTED], [A.CONSULTANT], S.ANSWERED),
    _rule(Action.ADDENDUM, [S.ANSWERED], [A.CONSULTANT]),
    _rule(Action.CLOSE, [S.ANSWERED], [A.REQUESTER], S.CLOSED),
    _rule(Action.COMMENT, DISCUSSING, [A.REQUESTER, A.CONSULTANT, A.POOL_MANAGER]),
    _rule(
        Action.TRACK_MATERIAL,
        [*DISCUSSING, S.CLOSED, S.DECLINED, S.WITHDRAWN],
        [A.REQUESTER, A.CONSULTANT, A.POOL_MANAGER],
    ),
)


class WrongActor(ExchangeError):
    """The caller sees the consultation but their part in it may not do this: 403."""

    http_status = 403


class WrongState(ExchangeError):
    """Not in this state: 409 (the caller may do it, but not now)."""

    http_status = 409


def sees(addressing: Addressing, state: State, actors: frozenset[Actor]) -> bool:
    """Whether a caller with these parts sees the consultation at all (else: 404).
    A draft is its requester's; a pool's members see its queue (unassigned requests)."""
    if Actor.REQUESTER in actors:
        return True
    if state is State.DRAFT:
        return False
    if actors & {Actor.CONSULTANT, Actor.POOL_MANAGER}:
        return True
    return Actor.POOL_MEMBER in actors and addressing is Addressing.POOL and state is S.SUBMITTED


def decide(addressing: Addressing, state: State, actors: frozenset[Actor], action: Action) -> State:
    """The state after `action`, or WrongActor / WrongState. The caller must see the
    consultation (`sees`) first."""
    for rule in RULES:
        if (
            rule.action is action
            and addressing in rule.addressing
            and state in rule.states
            and rule.actors & actors
        ):
            return rule.to or state
    # Refused: the wrong state if one of the caller's parts may do it in another state.
    elsewhere = [
        r for r in RULES if r.action is action and addressing in r.addressing and r.actors & actors
    ]
    if elsewhere:
        raise WrongState(f"a consultation that is {state.value} cannot be {_done(action)} now")
    raise WrongActor(f"you may not {action.value.replace('_', ' ')} this consultation")


def _done(action: Action) -> str:
    return {
        Action.EDIT: "edited",
        Action.SUBMIT: "submitted",
        Action.WITHDRAW: "withdrawn",
        Action.ASSIGN: "assigned",
        Action.ACCEPT: "accepted",
        Action.DECLINE: "declined",
        Action.REQUEST_INFO: "sent a request for information",
        Action.PROVIDE_INFO: "given information",
        Action.ANSWER: "answered",
        Action.ADDENDUM: "given an addendum",
        Action.CLOSE: "closed",
        Action.COMMENT: "commented on",
        Action.TRACK_MATERIAL: "updated for its material",
    }[action]


@dataclass(frozen=True)
class Cell:
    addressing: Addressing
    state: State
    actor: Actor
    action: Action
    outcome: str  # the next state, "403", "409" or "404" (the actor does not see it)


def matrix() -> Iterator[Cell]:
    """Every (addressing, state, one actor, action) and what the workflow answers."""
    for addressing in Addressing:
        for state in State:
            for actor in Actor:
                actors = frozenset({actor})
                for action in Action:
                    if not sees(addressing, state, actors):
                        outcome = "404"
                    else:
                        try:
                            outcome = decide(addressing, state, actors, action).value
                        except WrongActor:
                            outcome = "403"
                        except WrongState:
                            outcome = "409"
                    yield Cell(addressing, state, actor, action, outcome)
