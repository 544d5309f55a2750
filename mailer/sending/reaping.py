"""What the reaper does to the ledger: rows a vanished worker left in ``sending`` are resolved, once their
lease has expired, by what the claim's send journal says (sent, never attempted, in doubt). Unit-of-work
functions: each takes a Session and never commits (``services.upkeep`` does, per campaign)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.orm import Session

from mailer.sending.journal import ClaimProgress
from mailer.sending.ledger import UPDATE_OPTS, add_counts, finish_if_done, rowcount, skip_queued
from mailer.sending.ledger_sql import statements as _sql
from mailer.sending.models import Campaign, Delivery
from mailer.sending.states import CampaignStatus, DeliveryStatus

__all__ = ["ProgressOf", "ReapedCampaign", "reap_campaign", "unfinished_campaigns"]


def unfinished_campaigns(session: Session) -> list[tuple[int, str]]:
    """(id, status) of the campaigns that may hold rows of a vanished worker."""
    rows = session.execute(
        select(Campaign.id, Campaign.status).where(
            Campaign.status.in_((CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.CANCELLED))
        )
    )
    return [(int(id_), str(status)) for id_, status in rows]


@dataclass(frozen=True)
class ReapedCampaign:
    resent: list[int]  # rows queued again (never attempted, or policy resend), to enqueue after commit
    unknown: int  # rows marked unknown (in doubt under policy unknown, or a cancelled campaign's)
    idle: bool  # a sending campaign that has claimed nothing for a whole lease: its tasks were lost
    recovered: int = 0  # rows the claim's journal shows sent: recorded sent with their message id
    claims: tuple[str, ...] = ()  # the claims resolved: forget their journals after commit


ProgressOf = Callable[[str], "ClaimProgress | None"]


def reap_campaign(
    session: Session,
    campaign_id: int,
    status: str,
    *,
    expired: datetime,
    policy: str,
    now: datetime,
    progress_of: ProgressOf = lambda _claim: None,
) -> ReapedCampaign:
    """Resolve one campaign's rows whose worker vanished (``sending`` since before ``expired``; read
    through the campaign's own index range: the ledger has no status index), each by what its claim's
    journal (``progress_of``) says: sent -> ``sent`` with its message id; never attempted -> queued again
    (a cancelled campaign's: ``skipped``); in doubt, or no journal -> queued again (``policy`` resend) or
    ``unknown``. A cancelled campaign's rows in doubt are never resent, and its leftover queued rows are
    skipped."""
    stale = and_(
        Delivery.campaign_id == campaign_id,
        Delivery.status == DeliveryStatus.SENDING,
        Delivery.claimed_at < expired,
    )
    by_claim: dict[str, list[int]] = {}
    for row_id, claim_id in session.execute(select(Delivery.id, Delivery.claim).where(stale)):
        by_claim.setdefault(claim_id or "", []).append(int(row_id))
    recovered, untouched, doubtful = _read_journals(session, by_claim, progress_of, now)
    cancelled = status == CampaignStatus.CANCELLED
    resend = policy == "resend" and not cancelled
    mine = and_(stale, Delivery.id.in_(bindparam("row_ids", expanding=True)))
    resent: list[int] = []
    skipped = unknown = 0
    if cancelled:  # rows never attempted are skipped like the rest of its queue
        skipped = _set_rows(
            session, mine, untouched, status=DeliveryStatus.SKIPPED, last_error="campaign cancelled"
        )
    elif untouched or (doubtful and resend):
        resent = _requeue_rows(session, mine, untouched + (doubtful if resend else []), now)
        if doubtful and resend:
            _note(session, doubtful, "lease expired (worker lost); resent: it may have been sent before")
    if doubtful and not resend:
        unknown = _set_rows(
            session, mine, doubtful, status=DeliveryStatus.UNKNOWN,
            last_error="lease expired (worker lost); may have been sent",
        )  # fmt: skip
    if recovered or unknown or skipped:
        add_counts(session, campaign_id, sent=recovered, unknown=unknown, skipped=skipped)
    idle = False
    if cancelled:
        skip_queued(session, campaign_id, "campaign cancelled")
    elif status == CampaignStatus.SENDING:
        idle = _idle_since(session, campaign_id, expired, now)
        finish_if_done(session, campaign_id, now=now)
    claims = tuple(claim_id for claim_id in by_claim if claim_id)
    return ReapedCampaign(resent, unknown, idle, recovered, claims)


def _read_journals(
    session: Session, by_claim: dict[str, list[int]], progress_of: ProgressOf, now: datetime
) -> tuple[int, list[int], list[int]]:
    """What each claim's journal says of its rows: (rows recorded sent from it, rows never attempted, rows
    in doubt); rows of a claim without a journal are in doubt."""
    recovered = 0
    untouched: list[int] = []
    doubtful: list[int] = []
    for claim_id, row_ids in by_claim.items():
        progress = progress_of(claim_id) if claim_id else None
        if progress is None:
            doubtful += row_ids
            continue
        fates = {row_id: progress.fate(row_id) for row_id in row_ids}
        sent = [(row_id, progress.sent[row_id]) for row_id, fate in fates.items() if fate == "sent"]
        if sent:
            recovered += _recover_sent(session, claim_id, sent, now)
        doubtful += [row_id for row_id, fate in fates.items() if fate == "in_doubt"]
        untouched += [row_id for row_id, fate in fates.items() if fate == "not_attempted"]
    return recovered, untouched, doubtful


def _requeue_rows(session: Session, mine: Any, row_ids: list[int], now: datetime) -> list[int]:
    return sorted(
        session.scalars(
            update(Delivery)
            .where(mine)
            .values(status=DeliveryStatus.QUEUED, claim=None, queued_at=now, last_error=None)
            .returning(Delivery.id)
            .execution_options(**UPDATE_OPTS),
            {"row_ids": row_ids},
        )
    )


def _set_rows(session: Session, mine: Any, row_ids: list[int], *, status: str, last_error: str) -> int:
    if not row_ids:
        return 0
    statement = (
        update(Delivery)
        .where(mine)
        .values(status=status, claim=None, last_error=last_error)
        .execution_options(**UPDATE_OPTS)
    )
    return rowcount(session, statement, {"row_ids": row_ids})


def _idle_since(session: Session, campaign_id: int, expired: datetime, now: datetime) -> bool:
    """A sending campaign that has claimed nothing for a whole lease: its tasks were lost."""
    last_claim = session.scalar(
        select(func.max(Delivery.claimed_at)).where(Delivery.campaign_id == campaign_id)
    )
    started = session.scalar(select(Campaign.started_at).where(Campaign.id == campaign_id))
    return bool((last_claim or started or now) < expired)


def _recover_sent(session: Session, claim_id: str, sent: list[tuple[int, str]], now: datetime) -> int:
    """Rows the journal shows the transport accepted -> sent, with the message id it gave (the statement
    a sender's own record uses)."""
    sql = _sql(session)
    params = {
        "ids": sql.pack([row_id for row_id, _ in sent]),
        "vals": sql.pack([message_id for _, message_id in sent]),
        "claim": claim_id,
        "now": now,
    }
    return rowcount(session, sql.sent, params)


def _note(session: Session, row_ids: list[int], text_: str) -> None:
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(row_ids))
        .values(last_error=text_)
        .execution_options(**UPDATE_OPTS)
    )
