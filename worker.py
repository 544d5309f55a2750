"""``celery -A worker worker`` (and ``beat``) from a checkout: the Celery app of ``mailer.worker``.

Broker and every option come from mailer.settings (``NEWSLETTER_BROKER_URL`` ...); the tasks live in
mailer/worker/. Where only the package is installed (a wheel, the image), ``celery -A mailer.worker``
names the same app. Nothing else belongs here.
"""

from mailer.worker import app

__all__ = ["app"]
