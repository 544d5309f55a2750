"""Feedback in, list changes out: verify, store the raw message once, classify, apply the policy.

``receive_stepwise`` is the entry point for one message (``mailer.services.feedback.receive`` wraps it
with the settings' verifier). It takes an SNS envelope or, only when the caller passes
``verifier=SKIP_VERIFICATION`` explicitly, a bare SES notification generated locally. The webhook's
writer hands over many verified notifications at once (``receive_batch_stepwise``); one message is a group
of one. A group is applied in one transaction that ends by inserting the raw messages, each with what it
did: a second delivery of the same MessageId, or of the same SES feedback id in another message (SNS
delivers at least once; SES may publish one bounce to two topics), is found stored and changes nothing.
The subscriber changes go through the same service functions the preference page uses
(``subscribers.suppression``, ``subscribers.preferences``), each an idempotent conditional update."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, cast

from sqlalchemy import Table, insert, or_, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mailer.errors import ConflictError, InputError
from mailer.feedback.models import FeedbackMessage
from mailer.feedback.policy import (
    Action,
    LedgerMark,
    ResetSoftBounces,
    SoftBounce,
    Suppress,
    Unsubscribe,
    actions_for,
)
from mailer.feedback.ses_events import BounceEvent, ComplaintEvent, IgnoredEvent, SesEvent, classify
from mailer.feedback.sns import NOTIFICATION, SnsMessage, SnsMessageError, SnsSignatureError, SnsVerifier
from mailer.feedback.sns import parse_sns_message as _parse_sns
from mailer.sending import ledger
from mailer.sending.health import HealthLimits, verdict
from mailer.sending.models import Delivery
from mailer.sending.states import CampaignAction, CampaignStatus
from subscribers import preferences, suppression
from subscribers.bulk import insert_rows
from subscribers.errors import SubscribersError
from subscribers.models import Subscriber
from subscribers.normalise import email_key

__all__ = [
    "SKIP_VERIFICATION",
    "UnusablePayload",
    "Change",
    "FeedbackResult",
    "Verification",
    "apply_actions",
    "receive_batch_stepwise",
    "receive_stepwise",
    "verified_message",
]


# statements on the table, not the entity: the ORM's bulk paths cost more than the writes themselves
MESSAGES = cast(Table, FeedbackMessage.__table__)


class _SkipVerification:
    def __repr__(self) -> str:
        return "SKIP_VERIFICATION"


SKIP_VERIFICATION: Final = _SkipVerification()
"""Pass as ``verifier`` to accept input without a signature: locally generated notifications only."""

Verification = SnsVerifier | _SkipVerification


class UnusablePayload(InputError):
    """A message stored (so its redeliveries are duplicates) whose payload is no SES notification we read;
    authentic if it was verified: a webhook acknowledges it, since a retry cannot make it readable."""


@dataclass(frozen=True)
class Change:
    action: Action
    changed: bool
    note: str  # one line for a human: "a@x.org: suppressed (hard_bounce), status bounced"


@dataclass(frozen=True)
class FeedbackResult:
    key: str  # the dedupe key: SNS MessageId, or local-<sha256> for a bare notification
    kind: str  # SNS Type, or "SES" for a bare notification
    verified: bool
    duplicate: bool
    events: tuple[SesEvent, ...] = ()
    changes: tuple[Change, ...] = ()
    subscribe_url: str | None = None  # a SubscriptionConfirmation: the web side confirms by GETting it
    topic_arn: str | None = None
    notes: tuple[str, ...] = field(default=())

    def lines(self) -> list[str]:
        """What happened, for the CLI and the demo."""
        head = f"{self.kind} {self.key} ({'verified' if self.verified else 'UNVERIFIED, local'})"
        if self.duplicate:
            return [f"{head}: duplicate, already applied; nothing changed"]
        out = [head]
        out += [f"  event: {_describe(e)}" for e in self.events]
        out += [f"  {_label(c)}: {c.note}" for c in self.changes]
        out += [f"  {n}" for n in self.notes]
        if self.events and not self.changes:
            out.append("  no action for these events")
        return out


def receive_stepwise(
    body: str | bytes | Mapping[str, Any],
    *,
    sessions: sessionmaker[Session],
    verifier: Verification,
    now: dt.datetime,
    soft_bounce_limit: int,
    message_type_header: str | None = None,
    health: HealthLimits | None = None,
) -> FeedbackResult:
    """Verify (unless explicitly skipped), store once, classify and apply one message; commit.

    Raises SnsSignatureError for anything unverifiable, InputError for a malformed body. A verified
    message whose SES payload is malformed is stored (with the error as its outcome) before InputError
    is raised, so SNS retries of it are recognised as duplicates.
    """
    data = _as_mapping(body)
    if "Type" in data and "TopicArn" in data:
        message = _parse_sns(
            body if not isinstance(body, Mapping) else data, message_type_header=message_type_header
        )
        if isinstance(verifier, SnsVerifier):
            verifier.verify(message, now=now)
        elif verifier is not SKIP_VERIFICATION:
            raise TypeError("verifier must be an SnsVerifier or SKIP_VERIFICATION")
        return _receive_sns_stepwise(
            message,
            sessions,
            now,
            soft_bounce_limit,
            verified=verifier is not SKIP_VERIFICATION,
            health=health,
        )
    if "notificationType" in data or "eventType" in data:
        if verifier is not SKIP_VERIFICATION:
            raise SnsSignatureError(
                "a bare SES notification carries no signature; only an SNS message can be verified"
            )
        raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        text = raw if isinstance(raw, str) else json.dumps(data, ensure_ascii=False)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        key = "local-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]
        item = _Incoming(key, "SES", None, False, text, data)
        return _store_and_apply_stepwise(sessions, item, now, soft_bounce_limit, health)
    raise InputError("feedback: neither an SNS message (Type, TopicArn) nor an SES notification")


def verified_message(
    body: str | bytes | Mapping[str, Any],
    verifier: SnsVerifier,
    *,
    now: dt.datetime,
    message_type_header: str | None,
) -> SnsMessage:
    """An SNS message parsed and verified (SnsSignatureError, or InputError when malformed). No I/O but
    the verifier's certificate source."""
    message = _parse_sns(body, message_type_header=message_type_header)
    verifier.verify(message, now=now)
    return message


ATTEMPTS = 5
_TRY_AGAIN = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


@dataclass(frozen=True)
class _Incoming:
    """One message to store and apply: its key (the SNS MessageId, or ``local-<sha256>`` for a bare SES
    notification), kind, topic, whether it was verified, the raw text, and the SES payload."""

    key: str
    kind: str
    topic_arn: str | None
    verified: bool
    raw: str
    payload: object

    @classmethod
    def of(cls, message: SnsMessage, *, verified: bool) -> _Incoming:
        return cls(
            message.message_id, message.type, message.topic_arn, verified, message.raw, message.message
        )


def receive_batch_stepwise(
    messages: Sequence[SnsMessage],
    *,
    sessions: sessionmaker[Session],
    now: dt.datetime,
    soft_bounce_limit: int,
    health: HealthLimits | None = None,
) -> list[FeedbackResult | UnusablePayload]:
    """Store and apply verified Notifications together, in one transaction (group commit: a webhook under
    load hands over whatever arrived meanwhile). One answer per message, in order: its result, or the
    UnusablePayload error of a message that holds no SES notification (stored, so a redelivery is a
    duplicate). A database error fails the whole group, with nothing stored: each is delivered again (a
    deadlock with another process is tried again first)."""
    incoming = [_Incoming.of(message, verified=True) for message in messages]
    return _store_and_apply_all_stepwise(incoming, sessions, now, soft_bounce_limit, health)


def _store_and_apply_all_stepwise(
    incoming: Sequence[_Incoming],
    sessions: sessionmaker[Session],
    now: dt.datetime,
    soft_bounce_limit: int,
    health: HealthLimits | None,
) -> list[FeedbackResult | UnusablePayload]:
    classified: list[tuple[list[SesEvent], InputError | None]] = []
    for item in incoming:
        try:
            classified.append((list(classify(item.payload)), None))
        except InputError as exc:
            classified.append(([], exc))
    rows = []
    for item, (events, error) in zip(incoming, classified, strict=True):
        ids = {e.feedback_id for e in events if isinstance(e, BounceEvent | ComplaintEvent)}
        rows.append(
            {
                "message_id": item.key[:200],
                "feedback_id": next(iter(ids))[:200] if len(ids) == 1 else None,
                "kind": item.kind[:40],
                "topic_arn": item.topic_arn[:256] if item.topic_arn else None,
                "verified": item.verified,
                "received_at": now,
                "body": item.raw,
                "outcome": json.dumps({"error": str(error)}, ensure_ascii=False) if error else None,
            }
        )
    for attempt in range(ATTEMPTS):
        # the first attempt takes every message for new (a redelivery is rare, and looking costs a round
        # trip per group); the raw rows' insert, last, tells if one was stored already, and the group is
        # then rolled back and done again, looking first
        try:
            with sessions() as session:
                answers = _apply_group(
                    session,
                    incoming,
                    classified,
                    rows,
                    now,
                    soft_bounce_limit,
                    health,
                    look_first=attempt > 0,
                )
                if answers is not None:
                    session.commit()
                    return answers
                session.rollback()  # one of them was stored already: the group again, knowing it
        except DBAPIError as exc:
            # two processes applying feedback for the same addresses can deadlock: PostgreSQL ends one
            # transaction, which is done again rather than answered 503 (SNS would deliver it again)
            if getattr(exc.orig, "sqlstate", None) not in _TRY_AGAIN or attempt == ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0.001, 0.02) * (attempt + 1))
    raise ConflictError("feedback: the same messages keep arriving at another process; try again")


def _apply_group(
    session: Session,
    incoming: Sequence[_Incoming],
    classified: list[tuple[list[SesEvent], InputError | None]],
    rows: list[dict[str, Any]],
    now: dt.datetime,
    soft_bounce_limit: int,
    health: HealthLimits | None,
    *,
    look_first: bool,
) -> list[FeedbackResult | UnusablePayload] | None:
    """One attempt of ``_store_and_apply_all_stepwise``: skip what is stored already (``look_first``;
    else each message is taken for new), apply the rest, then store the raw messages with what they did
    (no second write of each row). None (to be rolled back) when one of them turns out to be stored
    already: its MessageId, or its SES feedback id under another MessageId."""
    keys = [row["message_id"] for row in rows]
    feedback_ids = [row["feedback_id"] for row in rows]
    stored: set[str] = set()
    stored_feedback: set[str] = set()
    if look_first:
        wanted = {f for f in feedback_ids if f}
        found = session.execute(
            select(MESSAGES.c.message_id, MESSAGES.c.feedback_id).where(
                or_(MESSAGES.c.message_id.in_(set(keys)), MESSAGES.c.feedback_id.in_(wanted))
            )
        )
        for message_id, feedback_id in found:
            stored.add(message_id)
            if feedback_id:
                stored_feedback.add(feedback_id)
    answers: list[FeedbackResult | UnusablePayload] = []
    todo: list[tuple[int, list[Action]]] = []
    fresh: list[int] = []
    for index, (item, (events, error)) in enumerate(zip(incoming, classified, strict=True)):
        key, feedback_id = keys[index], feedback_ids[index]
        duplicate = key in stored or feedback_id in stored_feedback
        stored.add(key)  # the same message twice in one group: its second copy is a duplicate
        if feedback_id:
            stored_feedback.add(feedback_id)
        if not duplicate:
            fresh.append(index)
        if error is not None and not duplicate:
            answers.append(UnusablePayload(str(error)))
            continue
        answers.append(
            FeedbackResult(key, item.kind, item.verified, duplicate, tuple(events), topic_arn=item.topic_arn)
        )
        if not duplicate:
            todo.append((index, actions_for(events)))
    flat = [action for _, actions in todo for action in actions]
    changes = apply_actions(session, flat, now=now, soft_bounce_limit=soft_bounce_limit, health=health)
    position = 0
    for index, actions in todo:
        mine = tuple(changes[position : position + len(actions)])
        position += len(actions)
        result = answers[index]
        assert isinstance(result, FeedbackResult)
        answers[index] = replace(result, changes=mine)
        note = [{"changed": c.changed, "note": c.note} for c in mine]
        rows[index] = {**rows[index], "outcome": json.dumps(note, ensure_ascii=False)}
    if fresh:
        # any unique column that is taken (the MessageId, the feedback id) skips its row
        inserted = insert_rows(
            session, MESSAGES, [rows[i] for i in fresh], skip_conflicts=True, returning="id"
        )
        if len(inserted) != len(fresh):
            return None
    return answers


def _receive_sns_stepwise(
    message: SnsMessage,
    sessions: sessionmaker[Session],
    now: dt.datetime,
    limit: int,
    *,
    verified: bool,
    health: HealthLimits | None,
) -> FeedbackResult:
    if message.type != NOTIFICATION:
        # Confirmations change no list: store them (audit, dedupe) and hand back the URL to visit.
        with sessions() as session:
            outcome = {"subscribe_url": message.subscribe_url}
            stored = _insert_raw(
                session,
                message.message_id,
                message.type,
                message.topic_arn,
                verified,
                message.raw,
                None,
                now,
                outcome=outcome,
            )
            if stored:
                session.commit()
        return FeedbackResult(
            key=message.message_id,
            kind=message.type,
            verified=verified,
            duplicate=not stored,
            subscribe_url=message.subscribe_url,
            topic_arn=message.topic_arn,
            notes=(
                f"topic {message.topic_arn}: GET the SubscribeURL to "
                + (
                    "confirm the subscription"
                    if message.type == "SubscriptionConfirmation"
                    else "re-subscribe"
                ),
            ),
        )
    return _store_and_apply_stepwise(sessions, _Incoming.of(message, verified=verified), now, limit, health)


def _store_and_apply_stepwise(
    sessions: sessionmaker[Session],
    item: _Incoming,
    now: dt.datetime,
    limit: int,
    health: HealthLimits | None = None,
) -> FeedbackResult:
    """One message, as a group of one: its result, or its UnusablePayload raised (it is stored first)."""
    answer = _store_and_apply_all_stepwise([item], sessions, now, limit, health)[0]
    if isinstance(answer, UnusablePayload):
        raise answer
    return answer


def _insert_raw(
    session: Session,
    key: str,
    kind: str,
    topic_arn: str | None,
    verified: bool,
    raw: str,
    feedback_id: str | None,
    now: dt.datetime,
    *,
    outcome: object,
) -> bool:
    """Insert the raw message as the transaction's first write; False (rolled back) if already there."""
    try:
        session.execute(
            insert(MESSAGES).values(
                message_id=key[:200],
                feedback_id=feedback_id[:200] if feedback_id else None,
                kind=kind[:40],
                topic_arn=topic_arn[:256] if topic_arn else None,
                verified=verified,
                received_at=now,
                body=raw,
                outcome=json.dumps(outcome, ensure_ascii=False) if outcome is not None else None,
            )
        )
    except IntegrityError:
        session.rollback()
        return False
    return True


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
        state = _state(session, email)
        what = f"suppressed ({action.reason})" if new else "already suppressed"
        return Change(action, new, f"{email}: {what}{state}")
    if isinstance(action, SoftBounce):
        subscriber = _subscriber(session, email)
        if subscriber is None:
            return Change(action, False, f"{email}: soft bounce for an address that is not a subscriber")
        limited = suppression.record_soft_bounce(
            session, email, limit=limit, evidence=action.evidence, now=now
        )
        count = session.scalar(select(Subscriber.soft_bounces).where(Subscriber.id == subscriber))
        what = f"soft bounce {count}/{limit}" + (", suppressed (soft_bounce_limit)" if limited else "")
        return Change(action, True, f"{email}: {what}{_state(session, email)}")
    if isinstance(action, Unsubscribe):
        subscriber = _subscriber(session, email)
        if subscriber is None:
            return Change(action, False, f"{email}: not a subscriber, nothing to unsubscribe")
        done = preferences.unsubscribe_all(session, subscriber, source=action.source, now=now)
        return Change(action, done, f"{email}: {'unsubscribed' if done else 'already not subscribed'}")
    if isinstance(action, ResetSoftBounces):
        subscriber = _subscriber(session, email)
        before = (
            session.scalar(select(Subscriber.soft_bounces).where(Subscriber.id == subscriber))
            if subscriber
            else 0
        )
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
    found: dict[str, list[Any]] = {}
    for delivery in session.execute(
        select(Delivery.id, Delivery.campaign_id, Delivery.email, Delivery.status, Delivery.message_id).where(
            Delivery.message_id.in_(sorted({m.message_id for m in marks}))
        )
    ):
        found.setdefault(delivery.message_id, []).append(delivery)
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


def _subscriber(session: Session, email: str) -> int | None:
    return session.scalar(select(Subscriber.id).where(Subscriber.email_key == email_key(email)))


def _state(session: Session, email: str) -> str:
    status = session.scalar(select(Subscriber.status).where(Subscriber.email_key == email_key(email)))
    return f", status {status}" if status else ", no subscriber with this address"


def _label(change: Change) -> str:
    if isinstance(change.action, LedgerMark):
        return "ledger"
    return "changed" if change.changed else "no change"


def _describe(event: SesEvent) -> str:
    if isinstance(event, IgnoredEvent):
        return f"ignored: {event.reason}"
    campaign = f", campaign {event.campaign}" if event.campaign else ""
    if isinstance(event, BounceEvent):
        who = ", ".join(r.email for r in event.recipients)
        return f"{event.bounce_type}/{event.sub_type} bounce of {who} (message {event.message_id}{campaign})"
    if isinstance(event, ComplaintEvent):
        who = ", ".join(event.recipients)
        kind = event.feedback_type or "no report"
        return f"complaint ({kind}) from {who} (message {event.message_id}{campaign})"
    return event.kind.replace("_", " ")


def _as_mapping(body: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        return body
    try:
        data = json.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise SnsMessageError("feedback: the body is not JSON") from None
    if not isinstance(data, dict):
        raise SnsMessageError("feedback: the body is not a JSON object")
    return data
