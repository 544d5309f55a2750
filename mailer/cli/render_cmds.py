"""Commands of the render_cmds group (filled in by its issue)."""

from mailer.cli.app import app  # noqa: F401
