"""Celery tasks: thin wrappers taking ids that call the services; the app is configured from settings.

``worker.py`` re-exports ``app`` for ``celery -A worker worker``. Redis broker, ``acks_late`` with
``reject_on_worker_lost`` (a killed worker's task is redelivered), ``ignore_result`` (no result backend
traffic per message), prefetch 1, every Redis key under ``settings.redis_prefix``, task events on (Flower and
``celery -A worker events`` watch the same Redis). Tasks are safe to run
twice: claiming rows and starting campaigns are conditional updates. Without a broker nothing goes through
Celery: the services send inline (the embedded mode, see AppEnv.enqueue).
"""

from __future__ import annotations

import logging

from celery import Celery

from mailer.observability.exporter import install_worker_hooks
from mailer.settings import Settings, get_settings

__all__ = ["app", "make_app", "reap", "send_batch", "start_campaign", "start_due"]

log = logging.getLogger(__name__)


def make_app(settings: Settings) -> Celery:
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
        # events for Flower / `celery -A worker events`: one small message per batch task, not per email
        worker_send_task_events=True,
        task_send_sent_event=True,
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
install_worker_hooks(get_settings)  # JSON logs and each worker process's metrics port (NEWSLETTER_WORKER_*)
_envs: dict[str, object] = {}


def _env():  # type: ignore[no-untyped-def]
    """This worker process's environment, built once (the services import the sending stack)."""
    from mailer.services.env import AppEnv

    env = _envs.get("env")
    if not isinstance(env, AppEnv):
        env = _envs["env"] = AppEnv.from_settings(get_settings())
    return env


@app.task(name="mailer.tasks.send_batch", acks_late=True, ignore_result=True)
def send_batch(campaign_id: int, delivery_ids: list[int]) -> None:
    from mailer.sending.sender import send_batch_stepwise

    report = send_batch_stepwise(_env().send_context(), campaign_id, delivery_ids)
    counts = {"sent": report.sent, "failed": report.failed, "skipped": report.skipped}
    log.info("campaign %s batch: %s", campaign_id, report, extra={"campaign_id": campaign_id, **counts})


@app.task(name="mailer.tasks.start_campaign", acks_late=True, ignore_result=True)
def start_campaign(campaign_id: int) -> None:
    """Start a draft campaign by id (the admin's start button; a second delivery finds it started)."""
    from mailer.errors import ConflictError
    from mailer.services import campaigns

    try:
        queued = campaigns.start_stepwise(_env(), campaign_id)
    except ConflictError as exc:  # started already (a redelivered task), or cancelled meanwhile
        log.warning("campaign %s not started: %s", campaign_id, exc, extra={"campaign_id": campaign_id})
        return
    log.info("campaign %s started: %s rows queued", campaign_id, queued, extra={"campaign_id": campaign_id})


@app.task(name="mailer.tasks.reap", ignore_result=True)
def reap() -> None:
    """Resolve sends of vanished workers, re-enqueue lost tasks, continue dead fills (beat, every half
    lease)."""
    from mailer.services import campaigns

    report = campaigns.reap_stepwise(_env())
    if report.resent or report.unknown or report.recovered or report.requeued or report.fills_resumed:
        log.warning("reaped lost sends: %s", report)


@app.task(name="mailer.tasks.start_due", ignore_result=True)
def start_due() -> None:
    """Start the scheduled campaigns whose time has come (beat runs this every 30 s)."""
    from mailer.services import campaigns

    started = campaigns.start_due_stepwise(_env())
    if started:
        log.info("started scheduled campaigns %s", started)
