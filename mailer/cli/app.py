"""The Typer application object and the helpers every command module shares."""

from __future__ import annotations

import typer
from rich.console import Console

from mailer.settings import Settings, get_settings

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


def settings() -> Settings:
    return get_settings()
