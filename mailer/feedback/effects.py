"""Policy actions carried out: suppressions, soft-bounce counts, unsubscribes through the same
subscriber functions the preference page uses (``subscribers.suppression``, ``subscribers.preferences``,
each an idempotent conditional update), and marks on the ledger rows the feedback is about, which count
toward their campaigns' health. One ``Change`` per action, with its note. The caller commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from mailer.feedback import queries
from mailer.feedback.policy import Action, LedgerMark, ResetSoftBounces, SoftBounce, Suppress, Unsubscribe
from mailer.feedback.results import Change
from mailer.sending import ledger
from mailer.sending.health import HealthLimits, verdict
from mailer.sending.states import CampaignAction, CampaignStatus
from subscribers import preferences, suppression
from subscribers.errors import SubscribersError

__all__ = ["apply_actions"]


def apply_actions(
    session: Session,
    actions: list[Action],
    *,
    now: dt.datetime,
    soft_bounce_limit: int,
    health: HealthLimits | None = None,
) -> list[Change]:
    """Apply policy actions through the subscribers services; the caller commits. One Change per action,
    in order. Suppressions are written together (a few statements for any number of them), after the
    other actions and before the ledger marks: a complaint's unsubscribe moves an active subscriber
    first, then the suppression wins. With ``health``, a bounce or complaint counts toward its campaign's
    rates, which may pause it."""
    changes: list[Change | None] = [None] * len(actions)

    def one(index: int, action: Action) -> None:
        try:
            changes[index] = _apply(session, action, now, soft_bounce_limit, health)
        except SubscribersError as exc:  # e.g. an address SES reported that is not valid for us
            changes[index] = Change(action, False, f"{action.email}: skipped, {exc}")

    # in the order of their addresses (stable: one address's actions keep theirs), as the suppressions
    # are: two groups naming the same addresses then take their row locks in the same order
    by_address = sorted(range(len(actions)), key=lambda i: actions[i].email.strip().lower())
    for index in by_address:
        action = actions[index]
        if not isinstance(action, Suppress | LedgerMark):
            one(index, action)
    suppressions = [(i, a) for i, a in enumerate(actions) if isinstance(a, Suppress)]
    if suppressions:
        try:
            done = suppression.suppress_many(
                session, [(a.email, a.reason, a.evidence) for _, a in suppressions], now=now
            )
        except SubscribersError:  # an address among them is not valid for us: each on its own
            for index, action in suppressions:
                one(index, action)
        else:
            for (index, action), result in zip(suppressions, done, strict=True):
                what = f"suppressed ({action.reason})" if result.new else "already suppressed"
                state = f", status {result.status}" if result.status else ", no subscriber with this address"
                changes[index] = Change(action, result.new, f"{action.email}: {what}{state}")
    marks = [(i, a) for i, a in enumerate(actions) if isinstance(a, LedgerMark)]
    if marks:
        for (index, _), change in zip(
            marks, _mark_ledger(session, [a for _, a in marks], health), strict=True
        ):
            changes[index] = change
    return [change for change in changes if change is not None]


def _apply(
    session: Session, action: Action, now: dt.datetime, limit: int, health: HealthLimits | None
) -> Change:
    email = action.email
    if isinstance(action, Suppress):
        new = suppression.suppress(session, email, action.reason, evidence=action.evidence, now=now)
        what = f"suppressed ({action.reason})" if new else "already suppressed"
        return Change(action, new, f"{email}: {what}{_state(session, email)}")
    if isinstance(action, SoftBounce):
        subscriber = queries.subscriber_id(session, email)
        if subscriber is None:
            return Change(action, False, f"{email}: soft bounce for an address that is not a subscriber")
        limited = suppression.record_soft_bounce(
            session, email, limit=limit, evidence=action.evidence, now=now
        )
        count = queries.soft_bounces(session, subscriber)
        what = f"soft bounce {count}/{limit}" + (", suppressed (soft_bounce_limit)" if limited else "")
        return Change(action, True, f"{email}: {what}{_state(session, email)}")
    if isinstance(action, Unsubscribe):
        subscriber = queries.subscriber_id(session, email)
        if subscriber is None:
            return Change(action, False, f"{email}: not a subscriber, nothing to unsubscribe")
        done = preferences.unsubscribe_all(session, subscriber, source=action.source, now=now)
        return Change(action, done, f"{email}: {'unsubscribed' if done else 'already not subscribed'}")
    if isinstance(action, ResetSoftBounces):
        subscriber = queries.subscriber_id(session, email)
        before = queries.soft_bounces(session, subscriber) if subscriber else 0
        if subscriber is None or not before:
            return Change(action, False, f"{email}: delivered")
        suppression.reset_soft_bounces(session, subscriber)
        return Change(action, True, f"{email}: delivered, soft bounce count {before} -> 0")
    if isinstance(action, LedgerMark):
        return _mark_ledger(session, [action], health)[0]
    raise TypeError(f"unknown action {action!r}")


def _mark_ledger(session: Session, marks: Sequence[LedgerMark], health: HealthLimits | None) -> list[Change]:
    """Name the ledger row each feedback is about (one query for all of them) and count the bounces and
    complaints toward their campaigns' health: a campaign still sending whose rates pass the limits
    pauses, with the reason. The ledger's statuses describe sending (queued..sent/failed); what happened
    after is the subscriber tables'."""
    found = queries.deliveries_by_message(session, {m.message_id for m in marks})
    located: list[tuple[LedgerMark, Any]] = []
    counts: dict[int, list[int]] = {}  # campaign -> [bounced, complained]
    for mark in marks:
        rows = found.get(mark.message_id, [])
        key = mark.email.strip().lower()  # as SES reports it (it may be no address we would accept)
        row = next((r for r in rows if r.email.lower() == key), rows[0] if rows else None)
        located.append((mark, row))
        if row is not None and mark.outcome in ("bounced", "complained"):
            tally = counts.setdefault(row.campaign_id, [0, 0])
            tally[0 if mark.outcome == "bounced" else 1] += 1
    paused = _count_toward_health(session, counts, health)
    changes = []
    for mark, row in located:
        if row is None:
            note = f"{mark.email}: {mark.outcome}; message {mark.message_id} not in the ledger"
            changes.append(Change(mark, False, note))
            continue
        where = f"delivery {row.id} of campaign {row.campaign_id} (ledger: {row.status})"
        reason = paused.pop(row.campaign_id, None)  # the pause is told once, by the mark that tipped it
        suffix = f"; campaign {row.campaign_id} {reason}" if reason else ""
        changes.append(Change(mark, bool(reason), f"{mark.email}: {mark.outcome}; {where}{suffix}"))
    return changes


def _count_toward_health(
    session: Session, counts: dict[int, list[int]], health: HealthLimits | None
) -> dict[int, str]:
    """Add each campaign's [bounced, complained] to its counters; the campaigns this paused, with why."""
    paused: dict[int, str] = {}
    for campaign_id, (bounced, complained) in sorted(counts.items()):
        campaign = ledger.count_feedback(session, campaign_id, bounced=bounced, complained=complained)
        reason = None
        if health is not None and campaign.status == CampaignStatus.SENDING:
            reason = verdict(
                health, sent=campaign.sent, bounced=campaign.bounced, complained=campaign.complained
            )
        if reason and ledger.set_status(
            session, campaign.id, CampaignAction.PAUSE, CampaignStatus.PAUSED, status_reason=reason
        ):
            paused[campaign.id] = reason
    return paused


def _state(session: Session, email: str) -> str:
    status = queries.subscriber_status(session, email)
    return f", status {status}" if status else ", no subscriber with this address"
