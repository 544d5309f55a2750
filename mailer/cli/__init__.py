"""Command line: ``newsletter render|preview|subscribers|topics|db|send|campaigns|demo``.

Each command module registers its commands on the shared ``app``; ``main`` maps the project's error tree
to one line on stderr and the error's exit code, so no command ever shows a traceback for bad input.
"""

from __future__ import annotations

import sys

from sqlalchemy.exc import OperationalError

from mailer.cli import feedback_cmds, render_cmds, send_cmds, subscriber_cmds  # noqa: F401  (they register commands)
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
    except OperationalError as exc:  # database unreachable, locked or full: the database's word, one line
        reason = " ".join(str(exc.orig or exc).split())
        err_console.print(f"[bold red]error:[/] database: {reason}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
