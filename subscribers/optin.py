"""Double opt-in: a signup makes a pending subscriber and hands back what the confirmation email needs;
the signed token from that email activates. At most one confirmation email per address per
``rate_limit_seconds``, so the form cannot flood someone's inbox. The caller renders, sends, commits."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from subscribers.db import not_within
from subscribers.errors import RateLimited
from subscribers.events import record_event
from subscribers.links import read_link
from subscribers.models import Subscriber, Suppression, new_salt
from subscribers.normalise import normalise_address, normalise_locale, normalise_name
from subscribers.preferences import _replace_topics, followed_topics, require_topics, set_locale
from subscribers.states import SubscriberAction, SubscriberStatus, sources, target
from subscribers.store import get_subscriber
from subscribers.tokens import make_token

__all__ = ["CONFIRM_MAX_AGE", "ConfirmResult", "SignupResult", "confirm", "signup"]

CONFIRM_MAX_AGE = 7 * 24 * 3600

SignupOutcome = Literal["confirmation_sent", "already_active", "suppressed"]


@dataclass(frozen=True)
class SignupResult:
    outcome: SignupOutcome
    subscriber_id: int | None
    email: str
    name: str | None
    locale: str
    topics: frozenset[str]
    confirm_token: str | None  # set only when a confirmation email is to be sent now

    @property
    def send_confirmation(self) -> bool:
        return self.confirm_token is not None


@dataclass(frozen=True)
class ConfirmResult:
    subscriber_id: int
    email: str
    locale: str
    status: str
    changed: bool  # False: it was confirmed before (or cannot be: unsubscribed since, suppressed)


def _claim_send_slot(session: Session, subscriber_id: int, now: datetime, limit: float) -> bool:
    """Conditionally stamp confirm_sent_at: only one of several racing signups wins the slot."""
    row = session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id, not_within(Subscriber.confirm_sent_at, now, limit))
        .values(confirm_sent_at=now)
        .returning(Subscriber.id)
        .execution_options(synchronize_session="fetch")
    ).first()
    return row is not None


def signup(
    session: Session,
    email: str,
    *,
    secret: str,
    topics: Collection[str] = (),
    locale: str | None = None,
    name: str | None = None,
    rate_limit_seconds: float = 3600,
    source: str = "web",
    now: datetime,
) -> SignupResult:
    """Record a signup. RateLimited when a confirmation email went to this address too recently; no
    email for an address that is active (nothing to confirm) or suppressed (no send may reach it)."""
    address = normalise_address(email)
    wanted = require_topics(session, topics)
    lang = normalise_locale(locale)
    clean_name = normalise_name(name)

    def result(outcome: SignupOutcome, subscriber_id: int | None, token: str | None) -> SignupResult:
        return SignupResult(outcome, subscriber_id, address.email, clean_name, lang, frozenset(wanted), token)

    if session.scalar(select(Suppression.id).where(Suppression.email_key == address.key)) is not None:
        return result("suppressed", None, None)

    insert = (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert
    created = session.execute(
        insert(Subscriber)
        .values(
            email=address.email,
            email_key=address.key,
            name=clean_name,
            locale=lang,
            status=SubscriberStatus.PENDING,
            created_at=now,
            changed_at=now,
            source=source[:32],
            soft_bounces=0,
            confirm_sent_at=now,
            token_salt=new_salt(),
        )
        .on_conflict_do_nothing(index_elements=["email_key"])
        .returning(Subscriber.id, Subscriber.token_salt)
    ).first()
    if created is not None:
        subscriber_id, salt = created
        _replace_topics(session, subscriber_id, wanted)
        detail = {"status": "pending", "topics": sorted(wanted)}
        record_event(session, subscriber_id, address.key, "subscribed", source=source, detail=detail, now=now)
        record_event(session, subscriber_id, address.key, "confirmation_sent", source=source, now=now)
        token = make_token(secret, subscriber_id, "confirm", salt=salt, now=now)
        return result("confirmation_sent", subscriber_id, token)

    subscriber = session.scalars(select(Subscriber).where(Subscriber.email_key == address.key)).one()
    if subscriber.status == SubscriberStatus.ACTIVE:
        return result("already_active", subscriber.id, None)
    if subscriber.status in (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED):
        return result("suppressed", subscriber.id, None)
    if not _claim_send_slot(session, subscriber.id, now, rate_limit_seconds):
        sent = subscriber.confirm_sent_at or now
        retry = max(0.0, rate_limit_seconds - (now - sent).total_seconds())
        raise RateLimited(
            f"a confirmation email went to {address.email} less than "
            f"{rate_limit_seconds / 60:.0f} minutes ago; try again later",
            retry_after=retry,
        )
    # pending, or unsubscribed and signing up anew: anyone can type an address into the form, so the row
    # stays as it is; the form's choices wait for the owner's click on the emailed link (``confirm``)
    subscriber.requested_topics = ",".join(sorted(wanted))
    subscriber.requested_locale = lang
    record_event(
        session,
        subscriber.id,
        address.key,
        "confirmation_sent",
        source=source,
        detail={"requested_topics": sorted(wanted), "requested_locale": lang},
        now=now,
    )
    session.flush()
    token = make_token(secret, subscriber.id, "confirm", salt=subscriber.token_salt, now=now)
    return result("confirmation_sent", subscriber.id, token)


def confirm(
    session: Session,
    token: str,
    *,
    secret: str | Sequence[str],
    max_age: float = CONFIRM_MAX_AGE,
    source: str = "web",
    now: datetime,
) -> ConfirmResult:
    """Activate the pending subscriber a confirmation token names (idempotent). ``secret``: the keys
    links may be signed with, newest first."""
    subscriber_id = read_link(session, secret, token, "confirm", max_age=max_age, now=now).id
    suppressed = Suppression.email_key == Subscriber.email_key
    # pending, or unsubscribed and signed up again: the click on the emailed link proves the address
    confirmable = (*sources(SubscriberAction.CONFIRM), *sources(SubscriberAction.REJOIN))
    row = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            Subscriber.status.in_(confirmable),
            ~select(Suppression.id).where(suppressed).exists(),
        )
        .values(status=target(SubscriberAction.CONFIRM), confirmed_at=now, changed_at=now)
        .returning(Subscriber.email_key, Subscriber.requested_topics, Subscriber.requested_locale)
        .execution_options(synchronize_session="fetch")
    ).first()
    if row is not None:
        email_key, requested_topics, requested_locale = row
        record_event(session, subscriber_id, email_key, "confirmed", source=source, now=now)
        if requested_topics is not None:  # the choices of the signup this link answers
            keys = [k for k in requested_topics.split(",") if k]
            wanted = require_topics(session, keys)
            before = followed_topics(session, subscriber_id)
            if before != frozenset(wanted):
                _replace_topics(session, subscriber_id, wanted)
                detail = {"added": sorted(set(wanted) - before), "removed": sorted(before - set(wanted))}
                record_event(
                    session, subscriber_id, email_key, "topics_changed", source=source, detail=detail, now=now
                )
        if requested_locale is not None:
            set_locale(session, subscriber_id, requested_locale, source=source, now=now)
        session.execute(
            update(Subscriber)
            .where(Subscriber.id == subscriber_id)
            .values(requested_topics=None, requested_locale=None)
            .execution_options(synchronize_session="fetch")
        )
    subscriber = get_subscriber(session, subscriber_id)
    session.refresh(subscriber)
    return ConfirmResult(
        subscriber.id, subscriber.email, subscriber.locale, subscriber.status, row is not None
    )
