"""Subscriber services for the CLI and the web app: import and export, add, show, remove, pages of
subscribers (keyset pagination), search, event logs, statistics, topics. Unit-of-work functions take a
``Session`` and never commit; ``import_stepwise`` commits a chunk at a time.

Topic lists typed by people (CLI flags, CSV cells, form fields) are split by one function,
``subscribers.normalise.split_topics`` (``, ; |`` and the full-width ``，；、``), and each name is a
registry key, name or alias, or a key of the topic table.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, TextIO

from sqlalchemy.orm import Session

from mailer.errors import InputError, NotFoundError
from mailer.services.env import AppEnv
from subscribers import preferences, store, suppression
from subscribers.csvreader import Reject
from subscribers.exporter import export_csv
from subscribers.importer import ImportReport, import_csv_stepwise
from subscribers.models import STATUSES, Subscriber
from subscribers.normalise import split_topics
from subscribers.states import ImportStatus, SubscriberAction, allowed_actions, import_status

__all__ = [
    "EventRow",
    "ImportStatus",
    "Page",
    "SubscriberDetail",
    "SubscriberRow",
    "SuppressionRow",
    "TopicRow",
    "add",
    "add_topic",
    "edit",
    "events_of",
    "export",
    "import_status",
    "import_stepwise",
    "list_subscribers",
    "remove",
    "search",
    "show",
    "statistics",
    "suppressions",
    "topic_keys",
    "topics",
    "unsuppress",
]

MAX_PAGE = 1000


@dataclass(frozen=True)
class SubscriberRow:
    id: int
    email: str
    name: str | None
    status: str
    locale: str
    topics: tuple[str, ...]
    source: str
    created_at: datetime

    @classmethod
    def of(cls, s: Subscriber) -> SubscriberRow:
        return cls(
            s.id, s.email, s.name, s.status, s.locale, tuple(sorted(s.topic_keys)), s.source, s.created_at
        )


@dataclass(frozen=True)
class Page:
    rows: tuple[SubscriberRow, ...]
    next_after_id: int | None  # pass as ``after_id`` for the next page; None: this was the last


@dataclass(frozen=True)
class EventRow:
    created_at: datetime
    kind: str
    source: str
    detail: str | None


@dataclass(frozen=True)
class SubscriberDetail:
    row: SubscriberRow
    confirmed_at: datetime | None
    soft_bounces: int
    events: tuple[EventRow, ...]

    @property
    def actions(self) -> tuple[SubscriberAction, ...]:
        return allowed_actions(self.row.status)


@dataclass(frozen=True)
class TopicRow:
    key: str
    name: str
    name_zh: str | None


def topic_keys(env: AppEnv, text: str | Sequence[str] | None) -> list[str]:
    """Topic keys for names people type: a registry key, name or alias, else taken as a key of the topic
    table (checked by the service that uses it)."""
    names = split_topics(text) if isinstance(text, str) or text is None else list(text)
    return [env.registry.match(name) or name.strip().lower() for name in names]


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"limit must be between 1 and {MAX_PAGE}, not {limit}")


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise InputError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")


def import_stepwise(
    env: AppEnv,
    stream: BinaryIO,
    *,
    topics: str | None = None,
    status: str = ImportStatus.ACTIVE,
    on_reject: Callable[[Reject], None] | None = None,
    on_header: Callable[[tuple[str, ...]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import (or re-import: updates, never duplicates) a subscriber CSV, committing per chunk. New
    subscribers whose row names no status get ``status``, one of ImportStatus (``import_status`` checks
    it: front ends that want to refuse early call that, never a check of their own)."""
    return import_csv_stepwise(
        env.sessions,
        stream,
        now=env.now(),
        topics=topic_keys(env, topics),
        status=status,
        default_locale=env.settings.default_lang,
        resolve_topic=env.registry.match,
        on_reject=on_reject,
        on_header=on_header,
        progress=progress,
    )


def export(
    session: Session, out: TextIO, *, statuses: Collection[str] | None = None, raw: bool = False
) -> int:
    """Subscribers as CSV in the format ``import`` reads back, spreadsheet formulas neutralised unless
    ``raw``; returns how many."""
    return export_csv(session, out, statuses=statuses, raw=raw)


def add(
    session: Session,
    env: AppEnv,
    email: str,
    *,
    name: str | None = None,
    topics: str | Sequence[str] | None = None,
    locale: str | None = None,
    status: str = "active",
    source: str = "cli",
) -> SubscriberRow:
    """One subscriber added by an admin (no confirmation email: the admin vouches for it)."""
    subscriber = preferences.add_subscriber(
        session,
        email,
        name=name,
        topics=topic_keys(env, topics),
        locale=locale,
        status=status,
        source=source,
        now=env.now(),
    )
    session.refresh(subscriber)
    return SubscriberRow.of(subscriber)


def show(session: Session, who: str | int) -> SubscriberDetail:
    """A subscriber by address or id, with its event log."""
    subscriber = store.find_subscriber(session, who)
    events = tuple(
        EventRow(e.created_at, e.kind, e.source, e.detail) for e in store.events_of(session, subscriber.id)
    )
    return SubscriberDetail(
        SubscriberRow.of(subscriber), subscriber.confirmed_at, subscriber.soft_bounces, events
    )


def events_of(session: Session, who: str | int, *, limit: int = 200) -> tuple[EventRow, ...]:
    _check_limit(limit)
    subscriber = store.find_subscriber(session, who)
    return tuple(
        EventRow(e.created_at, e.kind, e.source, e.detail)
        for e in store.events_of(session, subscriber.id, limit=limit)
    )


def remove(session: Session, who: str | int, *, now: datetime, source: str = "cli") -> SubscriberRow:
    """Delete a subscriber (a suppression of the address stays: it protects the address)."""
    subscriber = store.find_subscriber(session, who)
    row = SubscriberRow.of(subscriber)
    preferences.remove_subscriber(session, subscriber.id, source=source, now=now)
    return row


def list_subscribers(
    session: Session,
    env: AppEnv,
    *,
    status: str | None = None,
    topic: str | None = None,
    after_id: int = 0,
    limit: int = 50,
) -> Page:
    """One page of subscribers in id order; ``Page.next_after_id`` gives the next page."""
    _check_limit(limit)
    _check_status(status)
    if not 0 <= after_id <= store.MAX_ID:
        raise InputError(f"after_id must be between 0 and {store.MAX_ID}, not {after_id}")
    topic_id = None
    if topic:
        keys = topic_keys(env, topic)
        if len(keys) != 1:
            raise InputError(f"name one topic, not {topic!r}")
        topic_id = store.topic_ids(session, keys).get(keys[0])
        if topic_id is None:
            raise InputError(f"unknown topic {topic!r}")
    rows = store.list_subscribers(session, status=status, topic_id=topic_id, after_id=after_id, limit=limit)
    page = tuple(SubscriberRow.of(s) for s in rows)
    return Page(page, page[-1].id if len(page) == limit else None)


def search(session: Session, text: str, *, limit: int = 20) -> list[SubscriberRow]:
    """Subscribers whose address or name contains ``text``."""
    _check_limit(limit)
    if not text.strip():
        raise InputError("give some text to search for")
    return [SubscriberRow.of(s) for s in store.search_subscribers(session, text, limit=limit)]


def statistics(session: Session) -> store.Stats:
    return store.stats(session)


def topics(session: Session) -> list[TopicRow]:
    return [TopicRow(t.key, t.name, t.name_zh) for t in store.list_topics(session)]


def add_topic(
    session: Session, env: AppEnv, key: str, name: str | None = None, name_zh: str | None = None
) -> bool:
    """Create or rename a topic that is not in the registry file (topics are never deleted: subscribers
    follow them); True if changed. A registry topic is named in its file: a rename here would be undone
    at the next start, so it is refused."""
    clean = key.strip().lower()
    if clean in env.registry.keys:
        raise InputError(
            f"topic {clean!r} comes from the topic registry ({env.settings.registry_file}); rename it there"
        )
    return store.add_topic(session, key, name, name_zh)


# --- an admin's edits and the suppression list (the admin API and dashboard) -----------------------------
@dataclass(frozen=True)
class SuppressionRow:
    id: int
    email: str
    reason: str
    created_at: datetime
    evidence: str | None


def edit(
    session: Session,
    env: AppEnv,
    subscriber_id: int,
    *,
    topics: Sequence[str] | None = None,
    locale: str | None = None,
    unsubscribe: bool = False,
    source: str = "admin",
) -> SubscriberRow:
    """An admin's change of one subscriber: its topics, its language, or an unsubscribe (an admin never
    subscribes anyone back: only the reader's own confirmed link does). Each change is in its event log."""
    subscriber = store.get_subscriber(session, subscriber_id, lock=True)
    now = env.now()
    if topics is not None:
        preferences.set_topics(session, subscriber.id, topic_keys(env, list(topics)), source=source, now=now)
    if locale is not None:
        preferences.set_locale(session, subscriber.id, locale, source=source, now=now)
    if unsubscribe:
        preferences.unsubscribe_all(session, subscriber.id, source=source, now=now)
    session.refresh(subscriber)
    return SubscriberRow.of(subscriber)


def suppressions(session: Session, *, before_id: int | None = None, limit: int = 50) -> list[SuppressionRow]:
    """The suppression list, newest first (keyset pages: pass the last id as ``before_id``)."""
    _check_limit(limit)
    if before_id is not None and not 0 < before_id <= store.MAX_ID:
        raise InputError(f"before must be a suppression id, not {before_id}")
    return [
        SuppressionRow(s.id, s.email, s.reason, s.created_at, s.evidence)
        for s in suppression.list_suppressions(session, before_id=before_id, limit=limit)
    ]


def unsuppress(session: Session, env: AppEnv, email: str, *, reason: str, admin: str) -> None:
    """Take an address off the suppression list: an admin's decision, with the reason in its event log."""
    reason = " ".join(reason.split())
    if len(reason) < 3:
        raise InputError("say why the address may receive mail again (a reason of at least 3 characters)")
    if not suppression.unsuppress(
        session, email, source="admin", now=env.now(), note=f"{admin}: {reason[:500]}"
    ):
        raise NotFoundError(f"{email} is not on the suppression list")
