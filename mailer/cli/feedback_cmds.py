"""``newsletter feedback apply FILE.json``: one SES bounce/complaint (SNS envelope or bare) -> the lists."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.app import app, console, settings
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
    from mailer.database import session_factory
    from mailer.feedback.apply import SKIP_VERIFICATION, Verification, receive
    from mailer.feedback.sns import (
        CachedCertificates,
        CertificateDirectory,
        SnsVerifier,
        fetch_certificate_https,
    )

    s = settings()
    try:
        body = file.read_bytes()
    except OSError as exc:
        raise InputError(f"{file}: cannot read ({exc.strerror})") from None
    now = _parse_time(as_of) if as_of else dt.datetime.now(dt.UTC)
    if no_verify:
        verifier: Verification = SKIP_VERIFICATION
    else:
        fetch = CertificateDirectory(cert_dir) if cert_dir else fetch_certificate_https
        verifier = SnsVerifier(
            CachedCertificates(fetch),
            max_age=dt.timedelta(seconds=s.sns_max_age_seconds),
            topic_arns=frozenset(s.sns_topic_arns),
        )
    result = receive(
        body,
        sessions=session_factory(s),
        verifier=verifier,
        now=now,
        soft_bounce_limit=s.soft_bounce_limit,
    )
    for line in result.lines():
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _parse_time(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--as-of {text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
