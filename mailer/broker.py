"""The Celery broker as every process sees it: the app's configuration from settings and the tasks' wire
names. Producers (the services: a batch of ledger ids, the admin's start) publish by name through
``make_celery``; the worker front end (``mailer.worker``) registers the tasks under the same names.

Redis broker, ``acks_late`` with ``reject_on_worker_lost`` (a killed worker's task is redelivered),
``ignore_result`` (no result backend traffic per message), prefetch 1, every Redis key under
``settings.redis_prefix``, task events on (Flower and ``celery -A mailer.worker events`` watch the same
Redis). Without a broker nothing goes through Celery: the services send inline (``AppEnv.enqueue``).
"""

from __future__ import annotations

from celery import Celery

from mailer.settings import Settings

__all__ = ["REAP", "SEND_BATCH", "START_CAMPAIGN", "START_DUE", "make_celery"]

# Wire names: what a queued message carries. They are the names the tasks had in mailer/tasks.py, kept so
# that messages queued by an older release are still run after an upgrade.
SEND_BATCH = "mailer.tasks.send_batch"
START_CAMPAIGN = "mailer.tasks.start_campaign"
REAP = "mailer.tasks.reap"
START_DUE = "mailer.tasks.start_due"


def make_celery(settings: Settings) -> Celery:
    """A Celery app on the settings' broker (``memory://`` without one), with no tasks registered."""
    app = Celery("newsletter", broker=settings.broker_url or "memory://", set_as_current=False)
    app.conf.update(
        task_default_queue=f"{settings.redis_prefix}.send",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "global_keyprefix": f"{settings.redis_prefix}:",
            "visibility_timeout": 3600,
        },
        worker_hijack_root_logger=False,
        # events for Flower, `celery -A mailer.worker events`: one small message per batch task, not per email
        worker_send_task_events=True,
        task_send_sent_event=True,
        beat_schedule={
            "reap-lost-sends": {"task": REAP, "schedule": max(5.0, settings.lease_seconds / 2)},
            "start-due-campaigns": {"task": START_DUE, "schedule": 30.0},
        },
    )
    return app
