"""The services every front end calls (CLI, Celery tasks, web app): see mailer/services/env.py."""
