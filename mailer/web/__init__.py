"""The web side: one FastAPI application (``create_app``) for what readers and SES reach over HTTP: the SNS
webhook, the preference centre, unsubscribe (page and RFC 8058 one-click), signup with double opt-in,
the archive and its feeds. Routers parse and render; the rules live in mailer.services.
Run it with ``newsletter serve`` or ``uvicorn --factory mailer.web.app:create_app``.
"""
