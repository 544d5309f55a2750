"""``newsletter feedback apply FILE.json``: one SES bounce/complaint (SNS envelope or bare) -> the lists."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.app import app, environment, say
from mailer.errors import InputError

feedback_app = typer.Typer(
    help="SES feedback (bounces, complaints) arriving through SNS.", no_args_is_help=True
)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("apply")
def apply_cmd(
    file: Annotated[Path, typer.Argument(help="An SNS HTTP message (JSON) or a bare SES notification")],
    no_verify: Annotated[
        bool,
        typer.Option("--no-verify", help="Apply without checking the SNS signature (bare notifications)"),
    ] = False,
    cert_dir: Annotated[
        Path | None, typer.Option("--cert-dir", help="Read signing certificates from this folder, not HTTPS")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Verify as of this ISO time (replaying an old message)")
    ] = None,
) -> None:
    """Verify, store once and apply one feedback message; print what changed."""
    # imported here, not at the top: the database and crypto stack would slow every other command's start
    from mailer.services import feedback

    try:
        body = file.read_bytes()
    except OSError as exc:
        raise InputError(f"{file}: cannot read ({exc.strerror})") from None
    env = environment()
    moment = _parse_time(as_of) if as_of else None
    check = None if no_verify else feedback.verifier(env, cert_dir=cert_dir)
    result = feedback.receive(env, body, verify=check, trust_unsigned=no_verify, as_of=moment)
    for line in result.lines():
        say(line)


def _parse_time(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--as-of {text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
