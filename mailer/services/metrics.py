"""What the metrics read at scrape time (``mailer.web.collector``): subscribers per status, the
suppression list's size, the counters of the campaigns worth watching, and the depth of the Celery queue.

Cheap by design: the campaign counters are kept on the campaign rows (no ledger scan), the subscribers'
statuses are one GROUP BY, and the queue depth is a few LLEN on Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailer.sending import queries
from mailer.services.env import AppEnv
from subscribers import store

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["RECENT_CAMPAIGNS", "Snapshot", "queue_depth", "snapshot"]

RECENT_CAMPAIGNS = 10  # started campaigns shown beside every sending or paused one (bounded series)


@dataclass(frozen=True)
class Snapshot:
    subscribers: dict[str, int]  # per status, every status named
    suppressed: int
    campaigns: list[queries.CampaignCounters]


def snapshot(session: Session) -> Snapshot:
    """The database's side of the metrics, read in one (read-only) session."""
    return Snapshot(
        subscribers=store.status_counts(session),
        suppressed=store.suppression_count(session),
        campaigns=queries.campaign_counters(session, recent=RECENT_CAMPAIGNS),
    )


def queue_depth(env: AppEnv) -> int | None:
    """Batch tasks waiting in the send queue on the broker (every priority); None without Celery (the
    embedded mode, or a broker that is not Redis)."""
    if not env.distributed or not (env.settings.broker_url or "").startswith(("redis://", "rediss://")):
        return None
    import redis
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    conf = env.celery().conf
    options = conf.broker_transport_options or {}
    queue = options.get("global_keyprefix", "") + conf.task_default_queue
    sep = options.get("sep", Channel.sep)
    keys = [
        queue if step == 0 else f"{queue}{sep}{step}"
        for step in options.get("priority_steps", PRIORITY_STEPS)
    ]
    client = env.caches.queue_client
    if client is None:  # two at once may both make one: the spare is dropped
        client = env.caches.queue_client = redis.Redis.from_url(env.settings.broker_url or "")
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())
