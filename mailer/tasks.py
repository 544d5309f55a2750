"""Celery tasks: thin wrappers taking ids that call mailer.sending.sender and mailer.sending.campaigns.

The app is configured from settings here (``worker.py`` re-exports it for ``celery -A worker worker``):
Redis broker, ``acks_late`` with ``reject_on_worker_lost`` (a killed worker's task is redelivered),
``ignore_result`` (no result backend traffic per message), prefetch 1, every Redis key under
``settings.redis_prefix``. With no broker configured the tasks run in-process (``task_always_eager``):
the embedded mode. Tasks are safe to run twice: claiming is conditional.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from celery import Celery

from mailer.database import session_factory
from mailer.rendering.render import Brand
from mailer.sending import campaigns, sender
from mailer.settings import Settings, get_settings
from mailer.topics import load_registry

__all__ = [
    "app",
    "enqueue",
    "make_app",
    "reap",
    "run_reaper",
    "send_batch",
    "start_due",
    "use_settings",
]

log = logging.getLogger(__name__)


def make_app(settings: Settings) -> Celery:
    app = Celery("newsletter", broker=settings.broker_url or "memory://", set_as_current=False)
    queue = f"{settings.redis_prefix}.send"
    app.conf.update(
        task_default_queue=queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        task_always_eager=not settings.broker_url,
        task_eager_propagates=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "global_keyprefix": f"{settings.redis_prefix}:",
            "visibility_timeout": 3600,
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule={
            "reap-lost-sends": {
                "task": "mailer.tasks.reap",
                "schedule": max(5.0, settings.lease_seconds / 2),
            },
            "start-due-campaigns": {"task": "mailer.tasks.start_due", "schedule": 30.0},
        },
    )
    return app


app = make_app(get_settings())
_state: dict[str, object] = {}


def use_settings(settings: Settings) -> None:
    """Run the tasks of this process with ``settings`` (the CLI and in-process tests call this)."""
    contexts = _state.pop("contexts", [])
    assert isinstance(contexts, list)
    for context in contexts:
        context.close()
    _state["settings"] = settings
    app.conf.task_always_eager = not settings.broker_url


def _settings() -> Settings:
    settings = _state.get("settings")
    return settings if isinstance(settings, Settings) else get_settings()


_local = threading.local()


def _context() -> sender.SendContext:
    """This thread's sending state (one per worker process with -P solo/prefork, one per thread with
    -P threads: transports such as SMTP hold one connection and must not be shared between threads)."""
    context = getattr(_local, "context", None)
    settings = _settings()
    if not isinstance(context, sender.SendContext) or context.settings is not settings:
        context = sender.SendContext(settings, session_factory(settings))
        _local.context = context
        _state.setdefault("contexts", [])
        contexts = _state["contexts"]
        assert isinstance(contexts, list)
        contexts.append(context)
    return context


@app.task(name="mailer.tasks.send_batch", acks_late=True, ignore_result=True)
def send_batch(campaign_id: int, delivery_ids: list[int]) -> None:
    report = sender.send_batch(_context(), campaign_id, delivery_ids)
    log.info("campaign %s batch: %s", campaign_id, report)


def run_reaper(settings: Settings) -> tuple[campaigns.ReapReport, list[int]]:
    """Resolve sends of vanished workers, re-enqueue lost tasks, continue ledger fills that died: what
    beat runs every half lease and ``newsletter campaigns reap`` runs by hand."""
    factory = session_factory(settings)
    with factory() as session:
        report = campaigns.reap(
            session,
            lease_seconds=settings.lease_seconds,
            policy=settings.on_lost_send,
            enqueue=enqueue,
            batch_size=settings.batch_size,
        )
    fills = campaigns.resume_stalled_fills(
        factory,
        Brand.from_settings(settings),
        load_registry(settings.registry_file),
        enqueue=enqueue,
        lease_seconds=settings.lease_seconds,
        default_lang=settings.default_lang,
        batch_size=settings.batch_size,
    )
    return report, fills


@app.task(name="mailer.tasks.reap", ignore_result=True)
def reap() -> None:
    report, fills = run_reaper(_settings())
    if report.resent or report.unknown or report.requeued:
        log.warning("reaped lost sends: %s", report)
    if fills:
        log.warning("resumed the stalled ledger fills of campaigns %s", fills)


@app.task(name="mailer.tasks.start_due", ignore_result=True)
def start_due() -> None:
    """Start the scheduled campaigns whose time has come (beat runs this every 30 s)."""
    settings = _settings()
    started = campaigns.start_due(
        session_factory(settings),
        Brand.from_settings(settings),
        load_registry(settings.registry_file),
        enqueue=enqueue,
        default_lang=settings.default_lang,
        batch_size=settings.batch_size,
    )
    if started:
        log.info("started scheduled campaigns %s", started)


def enqueue(campaign_id: int, delivery_ids: Sequence[int]) -> None:
    """One batch task on the queue (or run right here in embedded mode)."""
    send_batch.apply_async((campaign_id, list(delivery_ids)))
