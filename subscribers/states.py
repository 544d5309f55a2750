"""A subscriber's status and the changes allowed between statuses: one table the service functions consult.

    pending ──confirm/activate──▶ active ──unsubscribe──▶ unsubscribed ──sign up again──▶ pending
       │                            │                          │
       └────────── bounce (hard, soft limit) ─────────────────▶ bounced
       └────────── complaint ──────────────────────────────────▶ complained (also from bounced)

A suppression drives ``bounce``, ``complain`` and ``block`` (a manual suppression: unsubscribed). Every
write that changes a status is conditional on ``sources(action)``, so a repeated or racing call changes
nothing. The database holds the same list of statuses as a CHECK constraint (migration 0005).
"""

from __future__ import annotations

from enum import StrEnum

from subscribers.errors import InvalidInput

__all__ = [
    "SUPPRESSION_STATUS",
    "ImportStatus",
    "SubscriberAction",
    "SubscriberStatus",
    "SuppressionReason",
    "allowed_actions",
    "import_status",
    "sources",
    "target",
]


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class SubscriberAction(StrEnum):
    CONFIRM = "confirm"  # the double opt-in link, or an import / admin activating a pending address
    UNSUBSCRIBE = "unsubscribe"
    # undoing an unsubscribe through a signed link of one's own mail (the preference centre, or the
    # confirmation of a new signup): the link proves the address
    REJOIN = "rejoin"
    BOUNCE = "bounce"
    COMPLAIN = "complain"
    BLOCK = "block"  # a manual suppression


class SuppressionReason(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE_LIMIT = "soft_bounce_limit"
    COMPLAINT = "complaint"
    MANUAL = "manual"


_S = SubscriberStatus
_TABLE: dict[SubscriberAction, tuple[frozenset[SubscriberStatus], SubscriberStatus]] = {
    SubscriberAction.CONFIRM: (frozenset({_S.PENDING}), _S.ACTIVE),
    SubscriberAction.UNSUBSCRIBE: (frozenset({_S.PENDING, _S.ACTIVE}), _S.UNSUBSCRIBED),
    SubscriberAction.REJOIN: (frozenset({_S.UNSUBSCRIBED}), _S.ACTIVE),
    SubscriberAction.BOUNCE: (frozenset({_S.PENDING, _S.ACTIVE, _S.UNSUBSCRIBED}), _S.BOUNCED),
    SubscriberAction.COMPLAIN: (
        frozenset({_S.PENDING, _S.ACTIVE, _S.UNSUBSCRIBED, _S.BOUNCED}),
        _S.COMPLAINED,
    ),
    # a manual block does not relabel a bounce or a complaint as an unsubscribe
    SubscriberAction.BLOCK: (frozenset({_S.PENDING, _S.ACTIVE}), _S.UNSUBSCRIBED),
}

# What a suppression of each reason does to a subscriber who has that address.
SUPPRESSION_STATUS: dict[SuppressionReason, SubscriberAction] = {
    SuppressionReason.HARD_BOUNCE: SubscriberAction.BOUNCE,
    SuppressionReason.SOFT_BOUNCE_LIMIT: SubscriberAction.BOUNCE,
    SuppressionReason.COMPLAINT: SubscriberAction.COMPLAIN,
    SuppressionReason.MANUAL: SubscriberAction.BLOCK,
}


def sources(action: SubscriberAction) -> tuple[SubscriberStatus, ...]:
    """The statuses ``action`` may change, sorted (for ``WHERE status IN (...)``)."""
    return tuple(sorted(_TABLE[action][0]))


def target(action: SubscriberAction) -> SubscriberStatus:
    return _TABLE[action][1]


def allowed_actions(status: str) -> tuple[SubscriberAction, ...]:
    """What may happen to a subscriber in ``status`` (an admin page shows these)."""
    return tuple(action for action, (froms, _) in _TABLE.items() if status in froms)


class ImportStatus(StrEnum):
    """The statuses an import may give new subscribers whose row names none. (An existing subscriber's
    status only moves from pending to active: an import never re-subscribes anyone.)"""

    ACTIVE = "active"
    PENDING = "pending"


def import_status(value: str) -> ImportStatus:
    """The one check of an import's status, whoever asks (the CLI, the API, a service): InvalidInput in
    words of its own, naming no front end's option."""
    try:
        return ImportStatus(value)
    except ValueError:
        allowed = " or ".join(ImportStatus)
        raise InvalidInput(f"an import gives new subscribers the status {allowed}, not {value!r}") from None
