"""What readers do through the links of their mail and the public forms: open their preference centre,
change topics and language, leave (one click or a confirmed button), come back, sign up with double opt-in,
confirm, and ask for a new preferences link.

The web app's routers call these; they hold the rules, the routers only parse and render. Unit of work:
each takes the request's ``Session`` and never commits (the request commits once, at its end), except
that a transactional email is sent before returning, so a request whose email cannot leave fails (and
rolls back) instead of recording an email nobody got.

Every signed link is read by ``open_link``: a forged, malformed or foreign token is one InvalidToken,
whatever the cause, so a prober learns nothing. Forms that take an address answer the same whether or
not the address subscribes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from mailer.services import mail
from mailer.services.env import AppEnv
from mailer.topics import Topic, TopicGroup
from mailer.urls import view_scope
from subscribers import optin, preferences
from subscribers.errors import InvalidInput, RateLimited
from subscribers.links import LinkedSubscriber, read_link, read_link_with_topics
from subscribers.models import LOCALES
from subscribers.normalise import normalise_locale
from subscribers.states import SubscriberAction, SubscriberStatus, sources
from subscribers.tokens import make_token

__all__ = [
    "Changes",
    "PreferencePage",
    "TopicChoice",
    "Outgoing",
    "confirm",
    "confirm_page",
    "deliver_stepwise",
    "open_link",
    "preference_page",
    "rejoin",
    "request_link",
    "save_preferences",
    "signup",
    "unsubscribe",
    "unsubscribe_page",
]

log = logging.getLogger(__name__)
Purpose = Literal["unsubscribe", "preferences", "confirm", "view"]
TopicAction = Literal["add", "remove"]


def open_link(
    session: Session, env: AppEnv, token: str, purpose: Purpose, *, campaign_id: int = 0
) -> LinkedSubscriber:
    """The subscriber a signed link names (any of the configured keys); InvalidToken otherwise."""
    scope = view_scope(campaign_id) if purpose == "view" else ""
    max_age = optin.CONFIRM_MAX_AGE if purpose == "confirm" else None
    return read_link(
        session, env.settings.secret_key, token, purpose, scope=scope, max_age=max_age, now=env.now()
    )


def _open_preferences(session: Session, env: AppEnv, token: str) -> tuple[LinkedSubscriber, frozenset[str]]:
    """``open_link`` of a preferences link, with the keys of the topics the subscriber follows."""
    return read_link_with_topics(session, env.settings.secret_key, token, "preferences", now=env.now())


def link_token(env: AppEnv, subscriber: LinkedSubscriber, purpose: Purpose, *, campaign_id: int = 0) -> str:
    """A fresh token of ``purpose`` for a subscriber (a page links to the reader's other pages)."""
    scope = view_scope(campaign_id) if purpose == "view" else ""
    return make_token(
        env.settings.signing_key,
        subscriber.id,
        purpose,
        salt=subscriber.token_salt,
        scope=scope,
        now=env.now(),
    )


# --- the preference centre ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicChoice:
    key: str
    name: str
    followed: bool
    proposed: TopicAction | None  # the per-topic link's pre-selection: shown checked or unchecked for it

    @property
    def checked(self) -> bool:
        """Ticked on the page: followed, unless a link proposes to remove it; or proposed to be added."""
        return self.proposed == "add" or (self.followed and self.proposed != "remove")


@dataclass(frozen=True)
class PreferencePage:
    lang: str  # the page's language
    subscriber_id: int
    email: str
    locale: str
    status: str
    followed: frozenset[str]
    groups: tuple[tuple[TopicGroup, tuple[TopicChoice, ...]], ...]
    proposed: tuple[TopicAction, Topic] | None  # from ?add= / ?remove=: the page asks to confirm it
    preferences_token: str
    unsubscribe_token: str

    @property
    def subscribed(self) -> bool:
        return self.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING)

    @property
    def can_rejoin(self) -> bool:
        return self.status == SubscriberStatus.UNSUBSCRIBED


def _proposal(env: AppEnv, add: str | None, remove: str | None) -> tuple[TopicAction, Topic] | None:
    """The topic a per-topic link proposes; an unknown key is ignored (an old link, a renamed topic)."""
    for action, key in (("remove", remove), ("add", add)):
        if key and key in env.registry.keys:
            return action, env.registry.get(key)  # type: ignore[return-value]
    return None


def preference_page(
    session: Session,
    env: AppEnv,
    token: str,
    *,
    lang_for: Callable[[str], str],
    add: str | None = None,
    remove: str | None = None,
) -> PreferencePage:
    """What the preference centre shows for a link, in ``lang_for(subscriber's locale)``; changes
    nothing (a GET)."""
    subscriber, followed = _open_preferences(session, env, token)
    lang = lang_for(subscriber.locale)
    proposed = _proposal(env, add, remove)
    groups = tuple(
        (
            group,
            tuple(
                TopicChoice(
                    topic.key,
                    topic.display_name(lang),
                    topic.key in followed,
                    proposed[0] if proposed and proposed[1].key == topic.key else None,
                )
                for topic in topics
            ),
        )
        for group, topics in env.registry.grouped()
    )
    return PreferencePage(
        lang=lang,
        subscriber_id=subscriber.id,
        email=subscriber.email,
        locale=subscriber.locale,
        status=subscriber.status,
        followed=followed,
        groups=groups,
        proposed=proposed,
        preferences_token=token,
        unsubscribe_token=link_token(env, subscriber, "unsubscribe"),
    )


@dataclass(frozen=True)
class Changes:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    locale: str | None = None  # the new language, when it changed
    status: str | None = None  # the new status, when it changed (left, rejoined)

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed or self.locale or self.status)


def save_preferences(
    session: Session, env: AppEnv, token: str, topics: Collection[str], locale: str | None
) -> Changes:
    """Make the link's subscriber follow exactly ``topics`` (registry keys) in ``locale``."""
    subscriber = open_link(session, env, token, "preferences")
    unknown = sorted(set(topics) - env.registry.keys)
    if unknown:
        raise InvalidInput(f"unknown topic {unknown[0]!r}")
    if locale is not None and locale not in LOCALES:
        raise InvalidInput(f"unknown language {locale!r} (one of {', '.join(LOCALES)})")
    now = env.now()
    change = preferences.set_topics(session, subscriber.id, topics, source="preferences", now=now)
    new_locale = None
    if locale is not None and preferences.set_locale(
        session, subscriber.id, locale, source="preferences", now=now
    ):
        new_locale = locale
    return Changes(tuple(sorted(change.added)), tuple(sorted(change.removed)), new_locale)


def rejoin(session: Session, env: AppEnv, token: str) -> Changes:
    """Undo an unsubscribe from the reader's own preferences link."""
    subscriber = open_link(session, env, token, "preferences")
    done = preferences.rejoin(session, subscriber.id, source="preferences", now=env.now())
    return Changes(status=SubscriberStatus.ACTIVE if done else None)


# --- leaving -----------------------------------------------------------------------------------------
_CAN_LEAVE = frozenset(sources(SubscriberAction.UNSUBSCRIBE))


@dataclass(frozen=True)
class UnsubscribePage:
    email: str
    status: str
    locale: str
    preferences_token: str


def unsubscribe_page(session: Session, env: AppEnv, token: str) -> UnsubscribePage:
    """What the unsubscribe page shows (a GET changes nothing: mail scanners follow links)."""
    subscriber = open_link(session, env, token, "unsubscribe")
    return UnsubscribePage(
        subscriber.email, subscriber.status, subscriber.locale, link_token(env, subscriber, "preferences")
    )


def unsubscribe(session: Session, env: AppEnv, token: str, *, source: str) -> bool:
    """Leave everything (the page's button, RFC 8058 one-click, the preference centre's "leave"); True
    when it changed anything. Idempotent. ``token`` is an unsubscribe or a preferences token."""
    try:
        subscriber = open_link(session, env, token, "unsubscribe")
    except InvalidInput:
        subscriber = open_link(session, env, token, "preferences")
    if subscriber.status not in _CAN_LEAVE:  # already left (or suppressed): the repeat writes nothing
        return False
    return preferences.unsubscribe_all(session, subscriber.id, source=source, now=env.now())


# --- signing up --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outgoing:
    """A transactional email a request decided to send, sent by ``deliver_stepwise`` once the request has
    answered: the answer then takes as long whether or not an email goes out (no address probing by
    timing), and the email leaves only after what it confirms is committed."""

    confirmation: optin.SignupResult | None = None
    preferences_link_to: int | None = None  # a subscriber id


def deliver_stepwise(env: AppEnv, outgoing: Outgoing | None) -> None:
    """Send what a request decided to send (after its answer); a failure is logged: the reader sees the
    same page either way, and may ask again once the per-address limit allows."""
    if outgoing is None:
        return
    try:
        if outgoing.confirmation is not None:
            mail.send_confirmation(env, outgoing.confirmation)
        if outgoing.preferences_link_to is not None:
            with env.transaction() as session:
                mail.send_preferences_link(session, env, outgoing.preferences_link_to)
    except Exception as exc:  # the transport or the database: nobody waits for this email's answer
        log.error("could not send a transactional email: %s", " ".join(str(exc).split())[:300])


def signup(
    session: Session, env: AppEnv, email: str, topics: Collection[str], locale: str | None
) -> tuple[optin.SignupOutcome | Literal["rate_limited"], Outgoing | None]:
    """Start double opt-in; what to send: the confirmation email, or an active reader's preferences link.
    The caller answers the same whatever this returns (no address probing)."""
    unknown = sorted(set(topics) - env.registry.keys)
    if unknown:
        raise InvalidInput(f"unknown topic {unknown[0]!r}")
    try:
        result = optin.signup(
            session,
            email,
            secret=env.settings.signing_key,
            topics=topics,
            locale=normalise_locale(
                locale, env.settings.default_lang if env.settings.default_lang in LOCALES else "en"
            ),
            rate_limit_seconds=env.settings.confirm_rate_limit_seconds,
            source="web",
            now=env.now(),
        )
    except RateLimited:
        return "rate_limited", None
    if result.send_confirmation:
        return result.outcome, Outgoing(confirmation=result)
    if result.outcome == "already_active":
        return result.outcome, request_link(session, env, email)
    return result.outcome, None


@dataclass(frozen=True)
class ConfirmPage:
    email: str
    status: str
    locale: str


def confirm_page(session: Session, env: AppEnv, token: str) -> ConfirmPage:
    """What the confirmation page shows before its button is pressed (scanners prefetch links)."""
    subscriber = open_link(session, env, token, "confirm")
    return ConfirmPage(subscriber.email, subscriber.status, subscriber.locale)


def confirm(session: Session, env: AppEnv, token: str) -> optin.ConfirmResult:
    return optin.confirm(session, token, secret=env.settings.secret_key, source="web", now=env.now())


def request_link(session: Session, env: AppEnv, email: str) -> Outgoing | None:
    """A new preferences link to email to a subscriber (at most one per address per
    ``link_rate_limit_seconds``); None when nothing is to be sent. Callers answer the same either way."""
    subscriber_id = preferences.claim_link_email(
        session, email, now=env.now(), rate_limit_seconds=env.settings.link_rate_limit_seconds
    )
    return None if subscriber_id is None else Outgoing(preferences_link_to=subscriber_id)
