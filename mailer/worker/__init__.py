"""The Celery front end: ``celery -A mailer.worker worker`` (and ``beat``), from a checkout or an
installed wheel; ``worker.py`` at the top of a checkout re-exports ``app`` for ``celery -A worker``.

The app is configured from settings (``mailer.broker``); the tasks (``tasks.py``) are thin wrappers that
take ids and call the services. JSON logs and each worker process's metrics port are switched on by
Celery's signals (``mailer.observability.exporter``).
"""

from __future__ import annotations

from mailer.observability.exporter import install_worker_hooks
from mailer.settings import get_settings
from mailer.worker.tasks import app

__all__ = ["app"]

install_worker_hooks(get_settings)  # JSON logs and each worker process's metrics port (NEWSLETTER_WORKER_*)
