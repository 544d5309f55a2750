"""Feedback in, list changes out: verify, store the raw message once, classify, apply the policy.

``receive_stepwise`` is the entry point for one message (``mailer.services.feedback.receive`` wraps it
with the settings' verifier). It takes an SNS envelope or, only when the caller passes
``verifier=SKIP_VERIFICATION`` explicitly, a bare SES notification generated locally. The webhook's
writer hands over many verified notifications at once (``receive_batch_stepwise``); one message is a group
of one. A group is applied in one transaction that ends by inserting the raw messages, each with what it
did: a second delivery of the same MessageId, or of the same SES feedback id in another message (SNS
delivers at least once; SES may publish one bounce to two topics), is found stored and changes nothing.
A transaction that deadlocks with another process is done again. Beside this module: ``queries`` (the
SQL), ``effects`` (the policy's actions carried out), ``results`` (the answers and their lines)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from mailer.errors import ConflictError, InputError
from mailer.feedback import queries
from mailer.feedback.effects import apply_actions
from mailer.feedback.events import BounceEvent, ComplaintEvent, SesEvent
from mailer.feedback.policy import Action, actions_for
from mailer.feedback.results import Change, FeedbackResult, UnusablePayload
from mailer.feedback.ses_events import classify
from mailer.feedback.sns import (
    NOTIFICATION,
    SUBSCRIPTION_CONFIRMATION,
    SnsMessage,
    SnsMessageError,
    SnsSignatureError,
    SnsVerifier,
    parse_sns_message,
)
from mailer.sending.health import HealthLimits

__all__ = [
    "SKIP_VERIFICATION",
    "Verification",
    "receive_batch_stepwise",
    "receive_stepwise",
    "store_confirmation_stepwise",
    "verified_message",
]


class _SkipVerification:
    def __repr__(self) -> str:
        return "SKIP_VERIFICATION"


SKIP_VERIFICATION: Final = _SkipVerification()
"""Pass as ``verifier`` to accept input without a signature: locally generated notifications only."""

Verification = SnsVerifier | _SkipVerification


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
    message whose SES payload is malformed is stored (with the error as its outcome) before its
    UnusablePayload is raised, once: a second copy stores nothing and is refused the same way.
    """
    data = _as_mapping(body)
    if "Type" in data and "TopicArn" in data:
        message = parse_sns_message(
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
    message = parse_sns_message(body, message_type_header=message_type_header)
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
    UnusablePayload error of a message that holds no SES notification (stored once; a redelivery gets
    the same error, never "duplicate": it was not applied). A database error fails the whole group, with
    nothing stored: each is delivered again (a deadlock with another process is tried again first)."""
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
        row = queries.message_row(
            key=item.key,
            kind=item.kind,
            topic_arn=item.topic_arn,
            verified=item.verified,
            raw=item.raw,
            feedback_id=next(iter(ids)) if len(ids) == 1 else None,
            now=now,
            outcome={"error": str(error)} if error else None,
        )
        rows.append(row)
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
    found = queries.stored_messages(session, keys, {f for f in feedback_ids if f}) if look_first else None
    stored = found.message_ids if found else set()
    stored_feedback = found.feedback_ids if found else set()
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
        if error is not None:  # refused, stored or not: a refusal is never "already applied"
            answers.append(UnusablePayload(str(error)))
            continue
        answers.append(
            FeedbackResult(key, item.kind, item.verified, duplicate, tuple(events), topic_arn=item.topic_arn)
        )
        if not duplicate:
            todo.append((index, actions_for(events)))
    flat = [action for _, actions in todo for action in actions]
    changes = apply_actions(session, flat, now=now, soft_bounce_limit=soft_bounce_limit, health=health)
    _hand_out(changes, todo, answers, rows)
    # any unique column that is taken (the MessageId, the feedback id) skips its row
    if fresh and queries.insert_messages(session, [rows[i] for i in fresh]) != len(fresh):
        return None
    return answers


def _hand_out(
    changes: Sequence[Change],
    todo: list[tuple[int, list[Action]]],
    answers: list[FeedbackResult | UnusablePayload],
    rows: list[dict[str, Any]],
) -> None:
    """Each applied message's share of ``changes`` (in the order of its actions): into its answer, and as
    its stored outcome."""
    position = 0
    for index, actions in todo:
        mine = tuple(changes[position : position + len(actions)])
        position += len(actions)
        result = answers[index]
        assert isinstance(result, FeedbackResult)
        answers[index] = replace(result, changes=mine)
        note = [{"changed": c.changed, "note": c.note} for c in mine]
        rows[index] = {**rows[index], "outcome": json.dumps(note, ensure_ascii=False)}


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
        return store_confirmation_stepwise(message, sessions=sessions, now=now, verified=verified)
    return _store_and_apply_stepwise(sessions, _Incoming.of(message, verified=verified), now, limit, health)


def store_confirmation_stepwise(
    message: SnsMessage, *, sessions: sessionmaker[Session], now: dt.datetime, verified: bool = True
) -> FeedbackResult:
    """A SubscriptionConfirmation or UnsubscribeConfirmation (verified by the caller, unless
    ``verified`` says otherwise): it changes no list; stored (audit, dedupe), and its SubscribeURL handed
    back for the caller to visit. Commits."""
    row = queries.message_row(
        key=message.message_id,
        kind=message.type,
        topic_arn=message.topic_arn,
        verified=verified,
        raw=message.raw,
        feedback_id=None,
        now=now,
        outcome={"subscribe_url": message.subscribe_url},
    )
    with sessions() as session:
        stored = queries.insert_messages(session, [row]) == 1
        session.commit()
    visit = "confirm the subscription" if message.type == SUBSCRIPTION_CONFIRMATION else "re-subscribe"
    return FeedbackResult(
        key=message.message_id,
        kind=message.type,
        verified=verified,
        duplicate=not stored,
        subscribe_url=message.subscribe_url,
        topic_arn=message.topic_arn,
        notes=(f"topic {message.topic_arn}: GET the SubscribeURL to {visit}",),
    )


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
