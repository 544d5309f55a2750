"""Celery tasks: thin wrappers taking ids that call the services. Tasks are safe to run twice: claiming
rows and starting campaigns are conditional updates."""

from __future__ import annotations

import logging

from mailer import broker
from mailer.errors import ConflictError
from mailer.services import lifecycle, upkeep
from mailer.services.env import AppEnv
from mailer.settings import get_settings

__all__ = ["app", "reap", "send_batch", "start_campaign", "start_due"]

log = logging.getLogger(__name__)

app = broker.make_celery(get_settings())
_envs: dict[str, AppEnv] = {}


def _env() -> AppEnv:
    """This worker process's environment, built once on its first task."""
    env = _envs.get("env")
    if env is None:
        env = _envs["env"] = AppEnv.from_settings(get_settings())
    return env


@app.task(name=broker.SEND_BATCH, acks_late=True, ignore_result=True)
def send_batch(campaign_id: int, delivery_ids: list[int]) -> None:
    report = lifecycle.send_batch_stepwise(_env(), campaign_id, delivery_ids)
    counts = {"sent": report.sent, "failed": report.failed, "skipped": report.skipped}
    log.info("campaign %s batch: %s", campaign_id, report, extra={"campaign_id": campaign_id, **counts})


@app.task(name=broker.START_CAMPAIGN, acks_late=True, ignore_result=True)
def start_campaign(campaign_id: int) -> None:
    """Start a draft campaign by id (the admin's start button, once ``lifecycle.check_start`` allowed it
    in the request; a second delivery finds it started)."""
    try:
        queued = lifecycle.start_stepwise(_env(), campaign_id)
    except ConflictError as exc:  # started already (a redelivered task), or cancelled meanwhile
        log.warning("campaign %s not started: %s", campaign_id, exc, extra={"campaign_id": campaign_id})
        return
    log.info("campaign %s started: %s rows queued", campaign_id, queued, extra={"campaign_id": campaign_id})


@app.task(name=broker.REAP, ignore_result=True)
def reap() -> None:
    """Resolve sends of vanished workers, re-enqueue lost tasks, continue dead fills (beat, every half
    lease)."""
    report = upkeep.reap_stepwise(_env())
    if report.resent or report.unknown or report.recovered or report.requeued or report.fills_resumed:
        log.warning("reaped lost sends: %s", report)


@app.task(name=broker.START_DUE, ignore_result=True)
def start_due() -> None:
    """Start the scheduled campaigns whose time has come (beat runs this every 30 s)."""
    started = upkeep.start_due_stepwise(_env())
    if started:
        log.info("started scheduled campaigns %s", started)
