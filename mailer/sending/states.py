"""The two state machines of sending, as tables: a campaign's status and a ledger row's status.

Campaign:

    draft ──schedule──▶ scheduled ──start (due)──▶ sending ──finish──▶ done
      └──────────start──────────────────────────────▲ │ ▲
                       scheduled/sending ──pause──▶ paused ──resume──┘   (a paused campaign that never
    draft/scheduled/sending/paused ──cancel──▶ cancelled                  started resumes to scheduled)
    done ──retry (failed rows queued again)──▶ sending; a sending or paused campaign keeps its status

Ledger row (one per campaign and subscriber):

    queued ──claim──▶ sending ──record──▶ sent | failed
      │                 ├──skip (not sendable any more, cancelled)──▶ skipped
      └──skip──▶ skipped├──release (paused, cancelled)──▶ queued | skipped
                        └──reap (worker lost, by its send journal)──▶ sent | queued | unknown
    failed | unknown ──retry (an operator's)──▶ queued

Services ask ``campaign_actions(status)`` which operator actions a campaign offers (a dashboard shows those
buttons) and change a status only through ``campaign_sources(action, to)``: every status write is an
``UPDATE ... WHERE status IN (sources)``, so racing callers cannot both succeed. The database holds the same
lists as CHECK constraints (migration 0005).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "Audience",
    "CampaignAction",
    "CampaignStatus",
    "DeliveryStatus",
    "campaign_actions",
    "campaign_sources",
    "campaign_targets",
    "delivery_sources",
]


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


class CampaignAction(StrEnum):
    SCHEDULE = "schedule"
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    FINISH = "finish"  # the system's, when every row has an outcome
    RETRY = "retry"  # failed rows queued again (``campaigns retry-failed``)


OPERATOR_ACTIONS = (
    CampaignAction.SCHEDULE,
    CampaignAction.START,
    CampaignAction.PAUSE,
    CampaignAction.RESUME,
    CampaignAction.CANCEL,
)


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"  # a worker died holding it: the message may or may not have left


class Audience(StrEnum):
    SUBSCRIBERS = "subscribers"  # each subscriber gets the general sections plus their topics
    ALL = "all"  # everyone gets every section


_C = CampaignStatus
_A = CampaignAction
CAMPAIGN_TRANSITIONS: tuple[tuple[CampaignAction, CampaignStatus, CampaignStatus], ...] = (
    (_A.SCHEDULE, _C.DRAFT, _C.SCHEDULED),
    (_A.START, _C.DRAFT, _C.SENDING),
    (_A.START, _C.SCHEDULED, _C.SENDING),
    (_A.PAUSE, _C.SENDING, _C.PAUSED),
    (_A.PAUSE, _C.SCHEDULED, _C.PAUSED),
    (_A.RESUME, _C.PAUSED, _C.SENDING),
    (_A.RESUME, _C.PAUSED, _C.SCHEDULED),  # paused before its time: it waits for its schedule again
    (_A.CANCEL, _C.DRAFT, _C.CANCELLED),
    (_A.CANCEL, _C.SCHEDULED, _C.CANCELLED),
    (_A.CANCEL, _C.SENDING, _C.CANCELLED),
    (_A.CANCEL, _C.PAUSED, _C.CANCELLED),
    (_A.FINISH, _C.SENDING, _C.DONE),
    (_A.RETRY, _C.DONE, _C.SENDING),
    (_A.RETRY, _C.SENDING, _C.SENDING),
    (_A.RETRY, _C.PAUSED, _C.PAUSED),  # the rows wait for the resume
)

_D = DeliveryStatus
DELIVERY_TRANSITIONS: tuple[tuple[str, DeliveryStatus, DeliveryStatus], ...] = (
    ("claim", _D.QUEUED, _D.SENDING),
    ("record", _D.SENDING, _D.SENT),
    ("record", _D.SENDING, _D.FAILED),
    ("skip", _D.SENDING, _D.SKIPPED),
    ("skip", _D.QUEUED, _D.SKIPPED),
    ("release", _D.SENDING, _D.QUEUED),
    ("release", _D.SENDING, _D.SKIPPED),
    ("reap", _D.SENDING, _D.SENT),
    ("reap", _D.SENDING, _D.QUEUED),
    ("reap", _D.SENDING, _D.UNKNOWN),
    ("reap", _D.SENDING, _D.SKIPPED),
    ("retry", _D.FAILED, _D.QUEUED),
    ("retry", _D.UNKNOWN, _D.QUEUED),
)


def campaign_sources(action: CampaignAction, to: CampaignStatus | None = None) -> tuple[CampaignStatus, ...]:
    """The statuses from which ``action`` (leading to ``to``, when given) may change a campaign."""
    found = tuple(src for act, src, dst in CAMPAIGN_TRANSITIONS if act == action and to in (None, dst))
    if not found:
        raise ValueError(f"no transition {action} -> {to}")
    return found


def campaign_targets(action: CampaignAction, status: str) -> tuple[CampaignStatus, ...]:
    """Where ``action`` may take a campaign in ``status`` (empty: not allowed)."""
    return tuple(dst for act, src, dst in CAMPAIGN_TRANSITIONS if act == action and src == status)


def campaign_actions(status: str) -> tuple[CampaignAction, ...]:
    """The operator actions a campaign in ``status`` offers, in a stable order (the dashboard's buttons)."""
    return tuple(action for action in OPERATOR_ACTIONS if campaign_targets(action, status))


def delivery_sources(action: str, to: DeliveryStatus) -> tuple[DeliveryStatus, ...]:
    found = tuple(src for act, src, dst in DELIVERY_TRANSITIONS if act == action and dst == to)
    if not found:
        raise ValueError(f"no ledger transition {action} -> {to}")
    return found
