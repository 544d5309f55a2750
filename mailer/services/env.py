"""The application environment: what every service needs, built once from Settings.

The CLI builds one per command, each worker process one (mailer/worker/tasks.py), the web app one in its
lifespan. Services receive it instead of six loose arguments (brand, registry, session factory, enqueue,
batch settings, clock) assembled at each call site.

Transactions, one convention for the whole code base:
- a unit-of-work function takes a ``Session`` and never commits; its caller commits once, e.g.
  ``with env.transaction() as session: lifecycle.pause(session, campaign_id)`` (the web app does the same
  once per request);
- a multi-step or long-running function takes a session factory (directly, or inside ``AppEnv``) and its
  name ends in ``_stepwise``: it commits as it goes (a ledger fill commits per chunk, so a crash keeps
  what was done and a resume continues from there).
tests/architecture/test_conventions.py holds both rules.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from mailer import broker
from mailer.rendering.render import Brand
from mailer.sending import Enqueue
from mailer.sending.message import SenderIdentity
from mailer.settings import Settings
from mailer.topics import TopicRegistry, load_registry
from mailer.urls import Urls

if TYPE_CHECKING:  # the database and sending stacks load on first use: `newsletter render` needs neither
    from celery import Celery
    from redis import Redis
    from sqlalchemy.orm import Session, sessionmaker

    from mailer.database import Database
    from mailer.sending.sender import SendContext
    from mailer.services.campaign_desk import Tracker
    from mailer.services.checklist import Plan


def utcnow() -> datetime:
    return datetime.now(UTC)


__all__ = ["AppEnv", "EnvCaches", "LruCache"]

T = TypeVar("T")


class LruCache:
    """The last ``size`` values made, by key (thread-safe; a value may be made twice in a race)."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[object, object] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: object, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[return-value]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


@dataclass(eq=False)
class EnvCaches:
    """What the services of one environment keep between calls in this process, each for one job."""

    plans: dict[int, tuple[float, Plan]] = field(default_factory=dict)  # checklists shown a moment ago
    starting: set[int] = field(default_factory=set)  # campaigns this process is starting now
    trackers: dict[int, Tracker] = field(default_factory=dict)  # live progress samples per campaign
    issues: LruCache = field(default_factory=lambda: LruCache(256))  # the archive's parsed issues, segments
    queue_client: Redis | None = None  # the metrics' reader of the Celery queue's depth
    admin_keys: list[str] | None = None  # what signs the dashboard's cookies and CSRF tokens


@dataclass(eq=False)
class _Resources:
    """What an environment opens on first use and ``close`` closes: connections and pools."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    database: Database | None = None
    celery: Celery | None = None
    contexts: list[SendContext] = field(default_factory=list)  # one per sending thread


@dataclass(frozen=True)
class AppEnv:
    settings: Settings
    brand: Brand
    identity: SenderIdentity
    registry: TopicRegistry
    urls: Urls
    clock: Callable[[], datetime] = utcnow
    # how a batch of ledger ids reaches a sender; None: Celery when a broker is configured, else inline
    enqueue_override: Enqueue | None = None
    caches: EnvCaches = field(default_factory=EnvCaches, repr=False, compare=False)
    _resources: _Resources = field(default_factory=_Resources, repr=False, compare=False)
    _local: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        enqueue: Enqueue | None = None,
    ) -> AppEnv:
        """Build the environment. The database is opened (migrated, the registry's topics synced) on the
        first use of ``sessions``: rendering needs none."""
        identity = SenderIdentity.from_settings(settings)
        return cls(
            settings=settings,
            brand=Brand.from_settings(settings),
            identity=identity,
            registry=load_registry(settings.registry_file),
            urls=identity.urls,
            clock=clock,
            enqueue_override=enqueue,
        )

    def __enter__(self) -> AppEnv:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- transactions ------------------------------------------------------------------------------
    @property
    def database(self) -> Database:
        """This environment's engines (made on first use; ``close`` disposes them)."""
        database = self._resources.database
        if database is None:
            from mailer.database import Database

            with self._resources.lock:
                database = self._resources.database
                if database is None:
                    database = self._resources.database = Database.of(self.settings)
        return database

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Read-write sessions on the settings' database (migrated and synced on first use)."""
        return self.database.sessions

    @property
    def read_sessions(self) -> sessionmaker[Session]:
        """Sessions for work that only reads, on connections the database keeps from writing."""
        return self.database.read_sessions

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed at the end of the block (rolled back on an error)."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @staticmethod
    def end_transaction(session: Session, *, commit: bool) -> None:
        """Commit (or not) and close a session begun elsewhere (a web request's): closing returns the
        connection, rolling back whatever is not committed."""
        try:
            if commit:
                session.commit()
        finally:
            session.close()

    # --- sending -----------------------------------------------------------------------------------
    @property
    def distributed(self) -> bool:
        """True when Celery workers send (a broker is configured); False: this process sends, inline."""
        return self.enqueue_override is None and bool(self.settings.broker_url)

    def enqueue(self, campaign_id: int, delivery_ids: Sequence[int]) -> None:
        """Hand one batch of ledger ids to a sender: a Celery task, or (embedded mode) this thread."""
        if self.enqueue_override is not None:
            self.enqueue_override(campaign_id, delivery_ids)
        elif self.settings.broker_url:
            self.celery().send_task(broker.SEND_BATCH, args=(campaign_id, list(delivery_ids)))
        else:
            from mailer.sending.sender import send_batch_stepwise

            send_batch_stepwise(self.send_context(), campaign_id, delivery_ids)

    def celery(self) -> Celery:
        """The Celery app that publishes to this environment's broker (made on first use)."""
        app = self._resources.celery
        if app is None:
            with self._resources.lock:
                app = self._resources.celery
                if app is None:
                    app = self._resources.celery = broker.make_celery(self.settings)
        return app

    def send_context(self) -> SendContext:
        """This thread's sending state (transports such as SMTP hold one connection: never shared)."""
        from mailer.sending.sender import SendContext

        context = getattr(self._local, "context", None)
        if context is None:
            context = SendContext(self.settings, self.sessions, self.clock, identity=self.identity)
            self._local.context = context
            with self._resources.lock:
                self._resources.contexts.append(context)
        assert isinstance(context, SendContext)
        return context

    def now(self) -> datetime:
        return self.clock()

    def close(self) -> None:
        """Close what this environment opened: the transports' connections, the broker connection, the
        database's pools. It can be used again afterwards (everything is opened anew on use)."""
        resources = self._resources
        with resources.lock:
            contexts, resources.contexts = resources.contexts, []
            app, resources.celery = resources.celery, None
            database, resources.database = resources.database, None
        for context in contexts:
            context.close()
        if app is not None:
            app.close()
        if database is not None:
            database.dispose()
        self._local.__dict__.clear()
