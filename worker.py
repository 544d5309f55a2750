"""The Celery app: ``celery -A worker worker`` (and ``celery -A worker beat`` for the lease reaper).

Broker and every option come from mailer.settings (``NEWSLETTER_BROKER_URL`` ...); the tasks live in
mailer/tasks.py. Nothing else belongs here.
"""

from mailer.tasks import app

__all__ = ["app"]
