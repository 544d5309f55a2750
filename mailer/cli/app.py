"""The Typer application object, the consoles, and the environment every command module uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console

from mailer.settings import Settings, get_settings

if TYPE_CHECKING:
    from mailer.services.env import AppEnv

__all__ = ["app", "console", "environment", "err_console", "say", "settings", "warn"]

app = typer.Typer(
    name="newsletter",
    help="Render a Markdown newsletter per topic segment and deliver it to subscribers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _newsletter() -> None:
    """Render a Markdown newsletter per topic segment and deliver it to subscribers."""
    # a callback keeps `newsletter COMMAND` a group even when only one command module is loaded
    from mailer.observability.logs import configure_logging

    configure_logging(settings(), "cli")  # JSON log lines on stderr when NEWSLETTER_LOG_FORMAT=json


def settings() -> Settings:
    return get_settings()


_built: list[AppEnv] = []


def environment() -> AppEnv:
    """The services' environment for this command, built once from the process settings."""
    from mailer.services.env import AppEnv

    current = settings()
    if not _built or _built[0].settings is not current:
        close_environment()
        _built[:] = [AppEnv.from_settings(current)]
    return _built[0]


def close_environment() -> None:
    """Close the command's environment (its database pools, broker and transport connections)."""
    while _built:
        _built.pop().close()


def say(text: str) -> None:
    """One line of output, printed as is (no Rich markup or highlighting in user data)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def warn(text: str) -> None:
    err_console.print(f"warning: {text}", markup=False, highlight=False, soft_wrap=True)
