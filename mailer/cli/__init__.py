"""Command line: ``newsletter render|preview|subscribers|topics|db|send|campaigns|feedback|demo|serve|admin``.

Each command module registers its commands on the shared ``app``. ``main`` imports only the module of the
command asked for (all of them for help or an unknown word): importing every command's stack (SQLAlchemy,
Celery, boto3, MJML, premailer) made each start take a second. It maps the project's error tree to one
line on stderr and the error's exit code, so no command ever shows a traceback for bad input.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from typer import Abort, Exit

# Typer vendors Click; its error classes are only reachable here (Typer re-exports Abort and Exit)
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from mailer.cli.app import app, close_environment, err_console
from mailer.errors import error_kind, is_database_outage

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
    "serve": "web_cmds",
    "admin": "admin_cmds",
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
        # not standalone: Click's usage errors come here as exceptions, to be shown as one line too
        app(standalone_mode=False)
    except Exit as done:  # --help and friends
        sys.exit(done.exit_code)
    except (Abort, KeyboardInterrupt):
        err_console.print("interrupted")
        sys.exit(130)
    except NoArgsIsHelpError as exc:  # a group named without a command: its help
        exc.show()
        sys.exit(exc.exit_code)
    except ClickException as exc:  # a bad argument or option
        _error(" ".join(exc.format_message().split()))
        sys.exit(exc.exit_code)
    except Exception as exc:
        kind = error_kind(exc)
        if kind is not None:  # the project's own errors (either tree): one line, their exit code
            _error(str(exc))
            sys.exit(kind.exit_code)
        if not is_database_outage(exc):
            raise
        _error("database: " + " ".join(str(getattr(exc, "orig", None) or exc).split()))
        sys.exit(1)
    finally:
        close_environment()


def _error(text: str) -> None:
    err_console.print(f"[bold red]error:[/] {text}", highlight=False, soft_wrap=True, markup=True)
