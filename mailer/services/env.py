"""The application environment: what every service needs, built once from Settings.

The CLI builds one per command, each worker process one (mailer/worker/tasks.py), the web app one in its
lifespan. Services receive it instead of six loose arguments (brand, registry, session factory, enqueue,
batch settings, clock) assembled at each call site.

Transactions, one convention for the whole code base:
- a unit-of-work function takes a ``Session`` and never commits; its caller commits once, e.g.
  ``with env.transaction() as session: campaigns.pause(session, campaign_id)`` (the web app does the same
  once per request);
- a multi-step or long-running function takes a session factory (directly, or inside ``AppEnv``) and its
  name ends in ``_stepwise``: it commits as it goes (a ledger fill commits per chunk, so a crash keeps
  what was done and a resume continues from there).
tests/architecture/test_conventions.py holds both rules.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from mailer import broker
from mailer.rendering.render import Brand
from mailer.sending import Enqueue
from mailer.sending.message import SenderIdentity
from mailer.settings import Settings
from mailer.topics import TopicRegistry, load_registry
from mailer.urls import Urls

if TYPE_CHECKING:  # the database and sending stacks load on first use: `newsletter render` needs neither
    from celery import Celery
    from sqlalchemy.orm import Session, sessionmaker

    from mailer.sending.sender import SendContext


def utcnow() -> datetime:
    return datetime.now(UTC)


__all__ = ["AppEnv"]

T = TypeVar("T")
_SHARED_LOCK = threading.Lock()


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
    _local: threading.local = field(default_factory=threading.local, repr=False, compare=False)
    _shared: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

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

    # --- transactions ------------------------------------------------------------------------------
    @property
    def sessions(self) -> sessionmaker[Session]:
        """Sessions on the settings' database (one engine per URL and process)."""
        from mailer.database import session_factory

        return session_factory(self.settings)

    @property
    def read_sessions(self) -> sessionmaker[Session]:
        """Sessions for work that only reads, on connections the database keeps from writing."""
        from mailer.database import read_session_factory

        return read_session_factory(self.settings)

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
        if "celery" not in self._shared:
            self._shared["celery"] = broker.make_celery(self.settings)
        app: Celery = self._shared["celery"]
        return app

    def send_context(self) -> SendContext:
        """This thread's sending state (transports such as SMTP hold one connection: never shared)."""
        from mailer.sending.sender import SendContext

        context = getattr(self._local, "context", None)
        if context is None:
            context = SendContext(self.settings, self.sessions, self.clock, identity=self.identity)
            self._local.context = context
            self._shared.setdefault("contexts", []).append(context)
        assert isinstance(context, SendContext)
        return context

    def shared(self, name: str, make: Callable[[], T]) -> T:
        """A process-wide object of this environment made once on first use (caches, verifiers)."""
        with _SHARED_LOCK:
            if name not in self._shared:
                self._shared[name] = make()
            value: T = self._shared[name]
        return value

    def now(self) -> datetime:
        return self.clock()

    def close(self) -> None:
        """Close the transports' connections and the broker connection this environment opened."""
        for context in self._shared.pop("contexts", []):
            context.close()
        app = self._shared.pop("celery", None)
        if app is not None:
            app.close()
        self._local.__dict__.clear()
