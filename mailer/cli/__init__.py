"""Command line: ``newsletter render|preview|subscribers|topics|db|send|campaigns|demo``.

Each command module registers its commands on the shared ``app``; ``main`` maps the project's error tree
to one line on stderr and the error's exit code, so no command ever shows a traceback for bad input.
"""

from __future__ import annotations

import sys

from mailer.cli import campaign_cmds, feedback_cmds, render_cmds, send_cmds, subscriber_cmds  # noqa: F401  (they register commands)
from mailer.cli.app import app, err_console
from mailer.errors import NewsletterError
from subscribers.errors import SubscribersError

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except NewsletterError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except SubscribersError as exc:  # the subscribers package's own tree carries the same exit codes
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if not _is_database_outage(exc):
            raise
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        err_console.print(f"[bold red]error:[/] database: {reason}", highlight=False, soft_wrap=True)
        sys.exit(1)


def _is_database_outage(exc: BaseException) -> bool:
    """Database unreachable, locked or full. sqlalchemy is only looked up once it has raised: importing
    it up front would slow the start of every command."""
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    return sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.OperationalError)
