"""A Celery worker's metrics: a port of its own per worker process, and the Celery signals that start it
and switch its logs to JSON lines.

Why a port per process, not prometheus_client's multiprocess mode: workers run on several machines and
die by SIGKILL (the send journal is built for it); a shared folder per machine would need a separate
exporter and clean-up of dead processes' files, while a port needs nothing. Each worker process takes the
first free port from ``NEWSLETTER_WORKER_METRICS_PORT`` up (several ``celery worker -P solo`` on one
machine: port, port+1, ...; prefork children likewise; the pool's parent sends nothing and serves
nothing), so Prometheus lists those ports as targets. Counters start again at 0 when a process restarts:
Prometheus's ``rate()`` and ``increase()`` handle such resets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from mailer.observability.logs import configure_logging
from mailer.settings import Settings

__all__ = ["MAX_PORTS", "install_worker_hooks", "start_metrics_port"]

log = logging.getLogger(__name__)

MAX_PORTS = 64  # worker processes one machine may run with metrics ports
_serving: dict[int, int | None] = {}  # pid -> its port (a forked child inherits the dict, not the server)


def start_metrics_port(settings: Settings) -> int | None:
    """Serve this process's metrics on the first free port from ``worker_metrics_port`` (in a daemon
    thread), once per process; the port taken, or None (switched off, or every port taken)."""
    from prometheus_client import start_http_server

    pid = os.getpid()
    if pid in _serving:
        return _serving[pid]
    _serving[pid] = None
    first = settings.worker_metrics_port
    if not first:
        return None
    host = settings.worker_metrics_host
    for port in range(first, min(first + MAX_PORTS, 65536)):
        try:
            start_http_server(port, addr=host)
        except OSError:
            continue
        log.info("metrics of this worker process on %s:%d/metrics", host, port, extra={"metrics_port": port})
        _serving[pid] = port
        return port
    log.warning("metrics: no free port in %d..%d; this process shows none", first, first + MAX_PORTS - 1)
    return None


def install_worker_hooks(settings: Callable[[], Settings]) -> None:
    """Connect the worker signals: JSON logs once Celery has set up its loggers (when the settings ask),
    and the metrics port of each process that runs tasks. Harmless outside a worker (never sent)."""
    from celery import signals

    def logs(**_: Any) -> None:
        configure_logging(settings(), "worker", level=None)  # Celery's --loglevel stays

    def pool_process(**_: Any) -> None:  # a prefork child, or the solo pool's own process
        start_metrics_port(settings())

    def ready(sender: Any = None, **_: Any) -> None:
        from celery.concurrency.prefork import TaskPool as Prefork

        if not isinstance(getattr(sender, "pool", None), Prefork):  # solo, threads: this process sends
            start_metrics_port(settings())

    signals.after_setup_logger.connect(logs, weak=False)
    signals.after_setup_task_logger.connect(logs, weak=False)
    signals.worker_process_init.connect(pool_process, weak=False)
    signals.worker_ready.connect(ready, weak=False)
