"""Command line: ``newsletter render|preview|subscribers|topics|db|send|campaigns|demo``.

Each command module registers its commands on the shared ``app``. ``main`` imports only the module of the
command asked for (all of them for help or an unknown word): importing every command's stack (SQLAlchemy,
Celery, boto3, MJML, premailer) made each start take a second. It maps the project's error tree to one
line on stderr and the error's exit code, so no command ever shows a traceback for bad input.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from mailer.cli.app import app, err_console
from mailer.errors import error_kind

__all__ = ["COMMAND_MODULES", "app", "load_commands", "main"]

# top-level command -> the module under mailer/cli that registers it
COMMAND_MODULES = {
    "render": "render_cmds",
    "preview": "render_cmds",
    "subscribers": "subscriber_cmds",
    "topics": "subscriber_cmds",
    "db": "subscriber_cmds",
    "send": "send_cmds",
    "demo": "send_cmds",
    "campaigns": "campaign_cmds",
    "feedback": "feedback_cmds",
}


def load_commands(argv: Sequence[str] = ()) -> None:
    """Register the command named first in ``argv``, or every command when none is recognised."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    modules = [COMMAND_MODULES[first]] if first in COMMAND_MODULES else sorted(set(COMMAND_MODULES.values()))
    for module in modules:
        importlib.import_module(f"mailer.cli.{module}")


def main() -> None:
    load_commands(sys.argv[1:])
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        kind = error_kind(exc)
        if kind is not None:  # the project's own errors (either tree): one line, their exit code
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.exit(kind.exit_code)
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
